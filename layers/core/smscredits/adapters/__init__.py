"""Adapters: the ports of services/ports.py on DynamoDB (and in memory), Twilio, Stripe, EventBridge and SQS."""
