"""The one-machine runner: moto, a local HTTP API gateway, timers and Twilio/Stripe stand-ins. Not deployed."""
