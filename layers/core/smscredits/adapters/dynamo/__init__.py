"""The ledger on DynamoDB: the client, the value codec, the item codec, the commit engine, the ledger and its
reader."""
