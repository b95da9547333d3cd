"""The SMS credits core: pure rules (domain), use cases (services) and their AWS adapters."""
