"""The StatementExports port on S3: a statement too large for a Lambda response (6 MB) is put in the exports
bucket and handed out as a presigned GET URL. The bucket's lifecycle deletes exports after a day."""

from __future__ import annotations

import uuid
from typing import Any

from smscredits.adapters import aws

# How long the link works: enough to follow the redirect and download, short enough not to be shared.
URL_SECONDS = 900


class S3StatementExports:
    """Puts one export per request under `statements/<account id>/`; the client is created on first use."""

    def __init__(self, bucket: str, *, client: Any = None) -> None:
        self.bucket = bucket
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.client("s3")
        return self._client

    def export(self, account_id: str, filename: str, body: bytes) -> str:
        key = f"statements/{account_id}/{uuid.uuid4().hex}.csv"
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType="text/csv; charset=utf-8",
            ContentDisposition=f'attachment; filename="{filename}"',
        )
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=URL_SECONDS
        )
        return url
