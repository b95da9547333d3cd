"""Adapters: DynamoDB, Twilio, Stripe and EventBridge behind the ports the services use."""
