"""GET /v1/docs and its files through the account API handler: Swagger UI from the layer, same origin only."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from smscredits.api import docs_routes
from tests.functions import Context, call, event, load_function

SOURCE = Path(docs_routes.__file__).parent / "static" / "swagger-ui" / "SOURCE.md"


def get(path: str, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = load_function("account_api").lambda_handler(
        event("account_get_balance", claims=None, path=path, headers=headers), Context()
    )
    response["headers"] = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    return response


def test_the_reference_page_loads_only_its_own_origins_scripts():
    answer = get("/v1/docs")

    assert answer["statusCode"] == 200 and answer["headers"]["content-type"].startswith("text/html")
    policy = answer["headers"]["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-eval" not in policy
    assert "<script>" not in answer["body"]  # no inline script: the start-up code is /v1/docs/docs.js
    sources = re.findall(r"(?:src|href)=\"([^\"]+)\"", answer["body"])
    assert sources and all(s.startswith("/") for s in sources), sources
    assert {"/v1/docs/swagger-ui-bundle.js", "/v1/docs/swagger-ui.css", "/v1/docs/docs.js"} <= {
        s.split("?")[0] for s in sources
    }


def test_the_vendored_files_are_the_npm_packages_to_the_byte():
    recorded = dict(re.findall(r"^\| (swagger-ui[\w.-]+) \| ([0-9a-f]{64}) \|$", SOURCE.read_text(), re.M))

    assert set(recorded) == {"swagger-ui-bundle.js", "swagger-ui.css"}
    for name, digest in recorded.items():
        answer = get(f"/v1/docs/{name}", **{"accept-encoding": "gzip, deflate, br"})
        assert answer["statusCode"] == 200 and answer["isBase64Encoded"] is True
        assert answer["headers"]["content-encoding"] == "gzip"
        assert answer["headers"]["vary"] == "Accept-Encoding"
        content = gzip.decompress(base64.b64decode(answer["body"]))
        assert hashlib.sha256(content).hexdigest() == digest, name
    assert docs_routes.SWAGGER_UI_VERSION in SOURCE.read_text()


def test_a_client_without_gzip_gets_the_plain_file():
    answer = get("/v1/docs/swagger-ui.css")

    assert answer["statusCode"] == 200 and answer["isBase64Encoded"] is False
    assert "content-encoding" not in answer["headers"]
    assert answer["headers"]["content-type"].startswith("text/css") and ".swagger-ui" in answer["body"]


def test_the_start_up_script_reads_the_document_of_this_origin():
    answer = get("/v1/docs/docs.js")

    assert answer["statusCode"] == 200 and answer["headers"]["content-type"].startswith("text/javascript")
    assert "url: '/v1/openapi.json'" in answer["body"] and "validatorUrl: null" in answer["body"]


def test_an_unknown_file_is_a_404_with_the_error_shape():
    for name in ("index.html", "..%2Fdashboard.html", "swagger-ui-bundle.js.gz"):
        status, answer = call("account_api", "account_get_balance", claims=None, path=f"/v1/docs/{name}")
        assert status == 404 and answer["error"]["code"] == "not_found", name


def test_every_example_in_the_document_is_valid_for_its_model():
    from smscredits.api import account_routes, admin_routes, openapi, packs_routes, send_routes

    routers = (account_routes.router, send_routes.router, admin_routes.router, packs_routes.router)
    models: set[type[BaseModel]] = {openapi.ErrorResponse}
    for route in (route for r in (*routers, packs_routes.checkout_router) for route in r.routes):
        models.update(m for m in (route.body, route.response) if m is not None)
    checked = 0
    for model in models:
        extra = model.model_config.get("json_schema_extra")
        examples = extra.get("examples") if isinstance(extra, dict) else None
        for example in examples if isinstance(examples, list) else []:
            model.model_validate_json(json.dumps(example))  # as a client would send or read it
            checked += 1
    assert checked >= 12


def test_the_document_groups_operations_and_shows_examples():
    status, document = call("account_api", "account_get_balance", claims=None, path="/v1/openapi.json")

    assert status == 200
    assert [tag["name"] for tag in document["tags"]][:3] == ["Messages", "Batches", "Balance and statement"]
    quote = document["paths"]["/v1/messages/quote"]["post"]
    assert quote["tags"] == ["Messages"]
    assert quote["requestBody"]["content"]["application/json"]["example"]["to"] == "+61412345678"
    example = quote["responses"]["200"]["content"]["application/json"]["example"]
    assert example["last_segment_units_left"] == 46 and example["replacements"][0]["replacement"] == "'"
    error = quote["responses"]["default"]["content"]["application/json"]["example"]
    assert error["error"]["code"] == "insufficient_credits"
    untagged = [(p, m) for p, ops in document["paths"].items() for m, op in ops.items() if not op.get("tags")]
    assert untagged == []
