"""`python -m local.check_ledger [ACCOUNT_ID]`: check a running local mode's ledger (pools = sum of entries);
with `--stack NAME`, a deployed stack's (its table from the stack's CreditsTableName output, read with the
AWS credentials and region of the environment; AWS_ENDPOINT_URL_* override the endpoints, as for any botocore
client). Read-only: a Query per account and a Scan for the account ids."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.session import get_session

from local import run_file
from local.moto_dynamo import moto_client
from smscredits.adapters.dynamo.reader import DynamoStatements
from smscredits.domain.audit import check_account
from smscredits.domain.errors import NotFound


def endpoint(flag: str | None) -> str | None:
    """--endpoint, else AWS_ENDPOINT_URL_DYNAMODB, else the moto URL the running `make local` wrote down."""
    if flag or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB"):
        return flag or os.environ["AWS_ENDPOINT_URL_DYNAMODB"]
    path = run_file()
    return str(json.loads(path.read_text())["moto"]) if path.exists() else None


def check(reader: DynamoStatements, account_ids: list[str]) -> list[str]:
    problems: list[str] = []
    for account_id in account_ids:
        try:
            account, entries, holds = reader.partition(account_id)
        except NotFound:
            problems.append(f"{account_id}: no such account")
            continue
        found = check_account(account, entries, holds)
        print(
            f"{account_id}: {len(entries)} entries, {len(holds)} holds: {'ok' if not found else 'PROBLEMS'}"
        )
        problems.extend(found)
    return problems


TABLE_OUTPUT = "CreditsTableName"


def stack_table(stack: str, region: str | None) -> tuple[str, Any]:
    """The stack's table name (its CreditsTableName output) and a DynamoDB client in the same region."""
    session = get_session()
    config = Config(retries={"max_attempts": 5, "mode": "standard"})
    stacks = session.create_client("cloudformation", region_name=region, config=config)
    [found] = stacks.describe_stacks(StackName=stack)["Stacks"]
    outputs = {output["OutputKey"]: output["OutputValue"] for output in found.get("Outputs", [])}
    if TABLE_OUTPUT not in outputs:
        raise LookupError(f"stack {stack} has no {TABLE_OUTPUT} output (deployed from this template?)")
    return outputs[TABLE_OUTPUT], session.create_client("dynamodb", region_name=region, config=config)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.check_ledger", description=__doc__)
    parser.add_argument("account_id", nargs="?", help="one account (default: every account)")
    parser.add_argument("--stack", help="a deployed stack's name: check its table on AWS")
    parser.add_argument("--region", help="the stack's region (default: the AWS CLI's configured region)")
    parser.add_argument("--endpoint", help="DynamoDB endpoint URL (default: the running local mode's moto)")
    parser.add_argument("--table", default=os.environ.get("TABLE_NAME") or "CreditsTable")
    args = parser.parse_args(argv)
    if args.stack:
        try:
            table, client = stack_table(args.stack, args.region)
        except (BotoCoreError, ClientError, LookupError) as failure:
            print(f"cannot find the table of stack {args.stack}: {failure}")
            return 2
        where = f"stack {args.stack}"
    else:
        url = endpoint(args.endpoint)
        if url is None:
            print(f"no local mode found ({run_file()} is missing): start `make local` or pass --endpoint")
            return 2
        # A stopped local mode: say so fast.
        table, where = args.table, url
        client = moto_client(url, Config(connect_timeout=2, retries={"max_attempts": 2}))
    reader = DynamoStatements(table, client=client)
    try:
        problems = check(reader, [args.account_id] if args.account_id else sorted(reader.account_ids()))
    except (BotoCoreError, ClientError) as failure:
        print(f"cannot read {table} at {where}: {failure}")
        return 2
    for problem in problems:
        print(problem)
    print(f"{len(problems)} problem(s)" if problems else "ledger ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
