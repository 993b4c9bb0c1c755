"""Tests for the workspace address (parse/format/resolve) and the cloud table."""

from __future__ import annotations

import dataclasses
import io
import json
import socket
import threading
import time
from typing import Any

import pytest
import requests
import urllib3
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import BaseAdapter, HTTPAdapter

from spark_aml_bridge import workspace_host as ws_host
from spark_aml_bridge.clouds import (
    CLOUDS,
    cloud_for_aml_host,
    cloud_for_arm_endpoint,
    get_cloud,
    is_known_authority,
)
from spark_aml_bridge.errors import (
    ConfigError,
    CredentialError,
    WorkspaceAddressError,
    WorkspaceUnreachableError,
)
from spark_aml_bridge.workspace import (
    WorkspaceAddress,
    parse_workspace,
    workspace_from_parts,
)
from spark_aml_bridge.workspace_host import clear_resolution_cache, resolve_workspace_host

SUB = "11111111-2222-3333-4444-555555555555"
RG = "my-rg"
WS = "my-ws"
PROV = "Microsoft.MachineLearningServices"
ARM = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/{PROV}/workspaces/{WS}"
HOST = "westeurope.api.azureml.ms"
URI = f"azureml://{HOST}/mlflow/v1.0{ARM}"
REST = f"https://{HOST}/mlflow/v2.0{ARM}"

EX_ARM = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/my-rg/providers/"
EX_URI = "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/"
EX_REST = "https://westeurope.api.azureml.ms/mlflow/v2.0/subscriptions/"
EX_PARTS = "subscription_id='00000000-0000-0000-0000-000000000000'"

TOKEN = "eyJhbGciOiJub25lIn0.eyJzZWNyZXQiOiJ0b2tlbiJ9.SECRETSIG"


def arm(sub: str = SUB, rg: str = RG, ws: str = WS) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROV}/workspaces/{ws}"


def uri(sub: str = SUB, rg: str = RG, ws: str = WS, host: str = HOST) -> str:
    return f"azureml://{host}/mlflow/v1.0{arm(sub, rg, ws)}"


def rest(sub: str = SUB, rg: str = RG, ws: str = WS, host: str = HOST) -> str:
    return f"https://{host}/mlflow/v2.0{arm(sub, rg, ws)}"


def rejected(value: Any, *fragments: str) -> str:
    """Parse ``value``, expect a WorkspaceAddressError holding every fragment; return it."""
    with pytest.raises(WorkspaceAddressError) as info:
        parse_workspace(value)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_resolution_cache()
    yield
    clear_resolution_cache()


# --- clouds -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, arm_endpoint, authority, scope, aml, storage",
    [
        (
            "AzureCloud",
            "https://management.azure.com",
            "login.microsoftonline.com",
            "https://management.azure.com/.default",
            "api.azureml.ms",
            "core.windows.net",
        ),
        (
            "AzureChinaCloud",
            "https://management.chinacloudapi.cn",
            "login.chinacloudapi.cn",
            "https://management.chinacloudapi.cn/.default",
            "api.ml.azure.cn",
            "core.chinacloudapi.cn",
        ),
        (
            "AzureUSGovernment",
            "https://management.usgovcloudapi.net",
            "login.microsoftonline.us",
            "https://management.usgovcloudapi.net/.default",
            "api.ml.azure.us",
            "core.usgovcloudapi.net",
        ),
    ],
)
def test_cloud_table(name, arm_endpoint, authority, scope, aml, storage):
    cloud = get_cloud(name)
    assert (cloud.name, cloud.arm_endpoint, cloud.authority_host) == (name, arm_endpoint, authority)
    assert (cloud.arm_scope, cloud.aml_api_suffix, cloud.storage_suffix) == (scope, aml, storage)
    assert cloud.authority == f"https://{authority}"
    assert cloud.aml_host("somewhere") == f"somewhere.{aml}"
    assert get_cloud(name.upper()) is cloud
    assert cloud_for_arm_endpoint(arm_endpoint + "/") is cloud
    assert cloud_for_aml_host(f"somewhere.{aml}:443") is cloud
    assert is_known_authority(authority)


def test_get_cloud_default_and_unknown():
    assert get_cloud(None).name == get_cloud("").name == "AzureCloud"
    with pytest.raises(ConfigError) as info:
        get_cloud("AzureMoonCloud")
    message = str(info.value)
    assert "'AzureMoonCloud'" in message
    for name in CLOUDS:
        assert name in message


@pytest.mark.parametrize(
    "host",
    [
        "login.microsoftonline.com",
        "https://login.microsoftonline.com",
        "https://login.microsoftonline.com/",
        "https://LOGIN.microsoftonline.com/my-tenant/v2.0",
        "login.microsoftonline.com:443",
        "https://login.chinacloudapi.cn",
        "login.microsoftonline.us",
    ],
)
def test_known_authorities(host):
    assert is_known_authority(host)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "https://127.0.0.1:8443",
        "127.0.0.1:8443",
        "https://localhost",
        "login.microsoftonline.com.evil.example",
        "https://login.microsoftonline.com:8443",
    ],
)
def test_custom_authorities(host):
    assert not is_known_authority(host)


def test_unknown_hosts_have_no_cloud():
    assert cloud_for_arm_endpoint("https://127.0.0.1:9000/arm") is None
    assert cloud_for_arm_endpoint("") is None
    assert cloud_for_aml_host("127.0.0.1:8443") is None
    assert cloud_for_aml_host("") is None
    assert cloud_for_aml_host("westeurope.experiments.azureml.net").name == "AzureCloud"


# --- accepted forms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        ARM,
        ARM[1:],
        ARM + "/",
        f"  {ARM}  ",
        ARM.replace("subscriptions", "SUBSCRIPTIONS")
        .replace("resourceGroups", "resourcegroups")
        .replace("providers", "Providers")
        .replace(PROV, PROV.lower())
        .replace("workspaces", "Workspaces"),
    ],
)
def test_parse_arm_id(value):
    address = parse_workspace(value)
    assert address == WorkspaceAddress(SUB, RG, WS)
    assert address.host is None and address.region is None
    assert address.arm_id == ARM


@pytest.mark.parametrize(
    "value, host, region",
    [
        (URI, HOST, "westeurope"),
        (URI.replace("v1.0", "v2.0"), HOST, "westeurope"),
        (URI + "?", HOST, "westeurope"),
        (URI + "?auth=interactive&is-remote=true", HOST, "westeurope"),
        (URI + "/", HOST, "westeurope"),
        (URI + "/experiments/whatever", HOST, "westeurope"),
        (URI + "#frag", HOST, "westeurope"),
        (uri(host="WestEurope.API.AzureML.ms"), HOST, "westeurope"),
        (uri(host="eastus.experiments.azureml.net"), "eastus.experiments.azureml.net", "eastus"),
        (
            uri(host="0123abcd.workspace.eastus2.api.azureml.ms"),
            "0123abcd.workspace.eastus2.api.azureml.ms",
            "eastus2",
        ),
        (uri(host="chinaeast2.api.ml.azure.cn"), "chinaeast2.api.ml.azure.cn", "chinaeast2"),
        (
            uri(host="usgovvirginia.api.ml.azure.us"),
            "usgovvirginia.api.ml.azure.us",
            "usgovvirginia",
        ),
        (uri(host="127.0.0.1:8443"), "127.0.0.1:8443", None),
        (uri(host="localhost"), "localhost", None),
        (uri(host="[::1]:8443"), "[::1]:8443", None),
        ("AzureML://" + URI[len("azureml://") :], HOST, "westeurope"),
    ],
)
def test_parse_tracking_uri(value, host, region):
    address = parse_workspace(value)
    assert address.arm_id == ARM
    assert address.host == host
    assert address.region == region


@pytest.mark.parametrize(
    "value",
    [
        REST,
        REST + "/api/2.0/mlflow/runs/create",
        REST.replace("v2.0", "v1.0"),
        REST.replace("/mlflow/", "/MLflow/"),
    ],
)
def test_parse_rest_url(value):
    address = parse_workspace(value)
    assert address == WorkspaceAddress(SUB, RG, WS, host=HOST, region="westeurope")
    assert address.rest_base == REST


def test_parse_percent_encoded_parts():
    address = parse_workspace(uri(rg="my%28rg%29.v2"))
    assert address.resource_group == "my(rg).v2"


@pytest.mark.parametrize(
    "rg",
    ["r", "my_rg.(prod)-1", "x" * 90, "Übung-rg", "rg.with.dots", "(paren)"],
)
def test_valid_resource_group_names(rg):
    assert parse_workspace(arm(rg=rg)).resource_group == rg


@pytest.mark.parametrize("ws", ["abc", "a" * 33, "My_WS-01", "0ws", "_".join(["w"] * 3)])
def test_valid_workspace_names(ws):
    assert parse_workspace(arm(ws=ws)).workspace_name == ws


# --- the address's views ------------------------------------------------------------------------


def test_address_views():
    address = parse_workspace(URI)
    assert address.arm_id == ARM
    assert address.scope_path == ARM
    assert address.tracking_uri() == URI
    assert address.tracking_uri("v2.0") == URI.replace("v1.0", "v2.0")
    assert address.rest_base == REST
    assert address.history_base == f"https://{HOST}/history/v1.0{ARM}"
    assert str(address) == f"{WS} ({RG}, sub …5555) at {HOST}"
    assert parse_workspace(address.tracking_uri()) == address
    assert parse_workspace(address.rest_base) == address
    assert parse_workspace(address.arm_id) == WorkspaceAddress(SUB, RG, WS)


def test_address_views_keep_port_and_quote_names():
    address = workspace_from_parts(SUB, "rg(1)", WS, host="127.0.0.1:8443")
    assert address.rest_base == f"https://127.0.0.1:8443/mlflow/v2.0{arm(rg='rg(1)')}"
    address = workspace_from_parts(SUB, "Übung", WS, host=HOST)
    assert "/resourceGroups/%C3%9Cbung/" in address.rest_base
    assert parse_workspace(address.tracking_uri()).resource_group == "Übung"


def test_address_without_host():
    address = parse_workspace(ARM)
    assert str(address) == f"{WS} ({RG}, sub …5555) (host not resolved)"
    for view in (address.tracking_uri, lambda: address.rest_base, lambda: address.history_base):
        with pytest.raises(WorkspaceAddressError) as info:
            view()
        assert "resolve_workspace_host" in str(info.value)
        assert "region=" in str(info.value)


def test_tracking_uri_rejects_unknown_api_version():
    with pytest.raises(ConfigError) as info:
        parse_workspace(URI).tracking_uri("v3.0")
    assert "'v3.0'" in str(info.value)


# --- rejected input: one error, quoting the bad part, with an example of the attempted form ------


@pytest.mark.parametrize(
    "value, fragments",
    [
        (arm(sub="abc"), ["subscription id 'abc' is not a GUID", EX_ARM]),
        (uri(sub="abc"), ["subscription id 'abc' is not a GUID", EX_URI, "az ml workspace show"]),
        (rest(sub="abc"), ["subscription id 'abc' is not a GUID", EX_REST]),
        (arm(sub=SUB + "0"), [f"'{SUB}0' is not a GUID", EX_ARM]),
        (arm(rg="x" * 91), [f"resource group name '{'x' * 91}' has 91 characters", EX_ARM]),
        (arm(rg="my.rg."), ["resource group name 'my.rg.' must not end with '.'", EX_ARM]),
        (arm(rg="my rg!"), ["resource group name 'my rg!' contains ' !'", EX_ARM]),
        (uri(rg="my%20rg"), ["resource group name 'my rg' contains ' '", EX_URI]),
        (arm(ws="ab"), ["workspace name 'ab' has 2 characters", "3 to 33", EX_ARM]),
        (arm(ws="a" * 34), [f"workspace name '{'a' * 34}' has 34 characters", EX_ARM]),
        (arm(ws="-ws1"), ["workspace name '-ws1' must start with a letter or digit", EX_ARM]),
        (arm(ws="_ws1"), ["workspace name '_ws1' must start with a letter or digit", EX_ARM]),
        (arm(ws="my.ws"), ["workspace name 'my.ws' contains '.'", EX_ARM]),
        (uri(ws="wörk"), ["workspace name 'wörk' contains 'ö'", EX_URI]),
        (
            arm(sub="abc", rg="rg.", ws="x"),
            ["subscription id 'abc'", "resource group name 'rg.'", "workspace name 'x'", EX_ARM],
        ),
        (
            ARM.replace("resourceGroups", "resourceGroup"),
            ["found 'resourceGroup' where 'resourceGroups' was expected", EX_ARM],
        ),
        (
            ARM.replace("subscriptions", "subscription"),
            ["found 'subscription' where 'subscriptions' was expected", EX_ARM],
        ),
        (
            ARM.replace("/providers/", "/provider/"),
            ["found 'provider' where 'providers' was expected", EX_ARM],
        ),
        (
            ARM.replace(PROV, "Microsoft.Databricks"),
            ["provider 'Microsoft.Databricks' is not Microsoft.MachineLearningServices", EX_ARM],
        ),
        (
            ARM.replace("workspaces", "workspace"),
            ["found 'workspace' where 'workspaces' was expected", EX_ARM],
        ),
        (f"/subscriptions/{SUB}", [f"expected 'resourceGroups' after '{SUB}'", EX_ARM]),
        (f"/subscriptions/{SUB}/resourceGroups", ["the resource group name is missing", EX_ARM]),
        (ARM.rsplit("/", 1)[0], ["the workspace name is missing", EX_ARM]),
        (ARM.replace(f"/{SUB}/", "//"), ["subscription id is missing", EX_ARM]),
        (
            ARM + "/computes/cpu",
            ["unexpected 'computes/cpu' after the workspace name 'my-ws'", EX_ARM],
        ),
        (WS, ["'my-ws' looks like a bare name", EX_ARM, "workspace_name="]),
        (SUB, [f"'{SUB}' looks like a subscription id", EX_ARM]),
        (
            uri().replace("/mlflow/v1.0", ""),
            ["does not start with '/mlflow/v1.0/' or '/mlflow/v2.0/'", EX_URI],
        ),
        (uri().replace("v1.0", "v3.0"), ["path '/mlflow/v3.0/subscriptions/", EX_URI]),
        (f"azureml://{HOST}", ["path '/' does not start with '/mlflow/v1.0/'", EX_URI]),
        (
            uri().replace(f"/{RG}/", "/rg/").replace("/workspaces/my-ws", ""),
            ["ends too early", EX_URI],
        ),
        (
            uri().replace("/resourceGroups/", "/resourceGroupz/"),
            ["found 'resourceGroupz' where 'resourceGroups' was expected", EX_URI],
        ),
        (rest().replace("/mlflow/v2.0", "/history/v1.0"), ["does not start with", EX_REST]),
        (uri().replace("azureml://", "http://"), ["scheme 'http' is not supported", EX_URI]),
        ("databricks://profile", ["scheme 'databricks' is not an Azure ML workspace", EX_URI]),
        ("file:///tmp/mlruns", ["scheme 'file'", EX_URI]),
        (f"azureml:///mlflow/v1.0{ARM}", ["the host is missing", EX_URI]),
        (
            f"azureml://subscriptions/{SUB}/resourcegroups/{RG}/workspaces/{WS}/datastores/x",
            ["asset or datastore URI", EX_URI],
        ),
        (uri(host="bad_host!"), ["host 'bad_host!' is not a valid host name", EX_URI]),
        (uri(host="-bad.example"), ["host '-bad.example' is not a valid host name", EX_URI]),
    ],
)
def test_rejections(value, fragments):
    message = rejected(value, *fragments)
    assert message.count("Fix:") == 1


@pytest.mark.parametrize(
    "value, name",
    [
        (ARM.replace("/workspaces/my-ws", "/registries/shared-reg"), "'shared-reg'"),
        (uri().replace("/workspaces/my-ws", "/registries/shared-reg"), "'shared-reg'"),
        (rest().replace("/workspaces/my-ws", "/registries/shared-reg"), "'shared-reg'"),
        ("azureml://registries/azureml/models/phi/versions/1", "'azureml'"),
        (f"azureml://{HOST}/mlflow/v1.0/registries/shared-reg", "'shared-reg'"),
    ],
)
def test_registries_are_not_workspaces(value, name):
    rejected(value, name, "is an Azure ML registry, not a workspace", "MLflow tracking server")


@pytest.mark.parametrize("value", [None, "", "   "])
def test_nothing_given(value):
    rejected(value, "no workspace given", "workspace=", "subscription_id=", "resource_group=")
    rejected(value, "workspace_name=")


def test_non_string():
    rejected(42, "must be a string, not int")


def test_secrets_in_input_are_not_echoed():
    message = rejected(
        uri(sub="abc").replace("azureml://", "azureml://user:hunter2@") + "?sig=SASSECRET",
        "user credentials",
    )
    assert "hunter2" not in message and "SASSECRET" not in message
    message = rejected(uri(sub="abc") + "?sig=SASSECRET", "'abc' is not a GUID")
    assert "SASSECRET" not in message


def test_errors_are_config_errors():
    with pytest.raises(ValueError):
        parse_workspace("nope")
    with pytest.raises(ConfigError):
        parse_workspace("nope")


# --- workspace_from_parts -----------------------------------------------------------------------


def test_parts_without_host():
    address = workspace_from_parts(f" {SUB} ", RG, WS)
    assert address == WorkspaceAddress(SUB, RG, WS)
    assert address.arm_id == ARM


@pytest.mark.parametrize(
    "kwargs, host, region",
    [
        ({"region": "westeurope"}, HOST, "westeurope"),
        ({"region": "West Europe"}, HOST, "westeurope"),
        (
            {"region": "chinaeast2", "cloud": "AzureChinaCloud"},
            "chinaeast2.api.ml.azure.cn",
            "chinaeast2",
        ),
        (
            {"region": "usgovvirginia", "cloud": get_cloud("AzureUSGovernment")},
            "usgovvirginia.api.ml.azure.us",
            "usgovvirginia",
        ),
        ({"host": HOST}, HOST, "westeurope"),
        ({"host": "https://westeurope.api.azureml.ms/"}, HOST, "westeurope"),
        ({"host": "127.0.0.1:8443"}, "127.0.0.1:8443", None),
        ({"host": "127.0.0.1:8443", "region": "westeurope"}, "127.0.0.1:8443", "westeurope"),
        ({"host": HOST, "region": "westeurope"}, HOST, "westeurope"),
        ({"host": "", "region": ""}, None, None),
    ],
)
def test_parts_with_region_or_host(kwargs, host, region):
    address = workspace_from_parts(SUB, RG, WS, **kwargs)
    assert (address.host, address.region) == (host, region)
    if host:
        assert address.tracking_uri() == uri(host=host)


@pytest.mark.parametrize(
    "args, kwargs, fragments",
    [
        (("", RG, WS), {}, ["missing: subscription_id"]),
        ((None, None, None), {}, ["subscription_id, resource_group, workspace_name"]),
        (("abc", RG, WS), {}, ["subscription id 'abc' is not a GUID"]),
        ((SUB, "rg.", WS), {}, ["resource group name 'rg.' must not end with '.'"]),
        ((SUB, RG, "w"), {}, ["workspace name 'w' has 1 characters"]),
        ((SUB, RG, WS), {"region": "west-europe"}, ["region 'west-europe' is not an Azure region"]),
        ((SUB, RG, WS), {"host": "bad host"}, ["host 'bad host' is not a valid host name"]),
        ((SUB, RG, WS), {"host": f"https://{HOST}/mlflow"}, ["must be a host name, not a URL"]),
        ((SUB, RG, WS), {"host": HOST, "region": "eastus"}, ["region 'eastus' does not match"]),
    ],
)
def test_parts_rejections(args, kwargs, fragments):
    with pytest.raises(WorkspaceAddressError) as info:
        workspace_from_parts(*args, **kwargs)
    message = str(info.value)
    for fragment in [*fragments, EX_PARTS]:
        assert fragment in message


def test_parts_unknown_cloud():
    with pytest.raises(ConfigError, match="AzureCloud"):
        workspace_from_parts(SUB, RG, WS, region="westeurope", cloud="Mars")


def test_constructor_validates():
    with pytest.raises(WorkspaceAddressError, match="'abc' is not a GUID"):
        WorkspaceAddress("abc", RG, WS)
    with pytest.raises(WorkspaceAddressError, match="not a valid host name"):
        WorkspaceAddress(SUB, RG, WS, host="a b")
    with pytest.raises(WorkspaceAddressError, match="not an Azure region"):
        WorkspaceAddress(SUB, RG, WS, region="x/y")
    assert WorkspaceAddress(SUB, RG, WS, host="H:1", region="WestEurope").host == "h:1"


# --- resolve_workspace_host against a fake ARM (the transport is replaced) ----------------------


class FakeCredential:
    def __init__(self, error: Exception | None = None) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.error = error

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.error:
            raise self.error
        return AccessToken(TOKEN, int(time.time()) + 3600)


class FakeArm(BaseAdapter):
    """A requests adapter answering from a script: (status, body[, headers]) or an exception."""

    def __init__(self, *answers: Any, delay: float = 0.0) -> None:
        super().__init__()
        self.answers = list(answers)
        self.seen: list[requests.PreparedRequest] = []
        self.delay = delay

    def send(self, request, **kwargs):  # noqa: ANN001, ANN003, ANN201 (requests' signature)
        self.seen.append(request)
        time.sleep(self.delay)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        status, body, *rest = answer
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(content),
            headers={"Content-Type": "application/json", **(rest[0] if rest else {})},
            status=status,
            preload_content=False,
        )
        # requests' own builder, so the response looks exactly like a real one.
        return HTTPAdapter().build_response(request, raw)

    def close(self) -> None:
        pass


@pytest.fixture
def fake_arm(monkeypatch):
    """Install a FakeArm; returns a function that sets its answers."""
    holder: dict[str, FakeArm] = {}

    def install(*answers: Any, delay: float = 0.0) -> FakeArm:
        adapter = FakeArm(*answers, delay=delay)
        holder["adapter"] = adapter

        def make_transport(ca_bundle, timeout):
            session = requests.Session()
            session.mount("https://", adapter)
            return RequestsTransport(session=session, session_owner=True)

        monkeypatch.setattr(ws_host, "_make_transport", make_transport)
        return adapter

    return install


def workspace_body(uri_value: str | None = URI, location: str | None = "westeurope") -> dict:
    props = {"mlFlowTrackingUri": uri_value} if uri_value is not None else {}
    body: dict[str, Any] = {"id": ARM, "name": WS, "properties": props}
    if location:
        body["location"] = location
    return body


def resolve(**kwargs: Any) -> WorkspaceAddress:
    kwargs.setdefault("credential", FakeCredential())
    return resolve_workspace_host(parse_workspace(ARM), **kwargs)


def test_resolve_keeps_a_known_host(fake_arm):
    adapter = fake_arm((500, {}))
    address = parse_workspace(URI)
    assert resolve_workspace_host(address, None) is address
    assert adapter.seen == []


def test_resolve_uses_the_tracking_uri_from_arm(fake_arm):
    private = "0123abcd.workspace.westeurope.api.azureml.ms"
    adapter = fake_arm((200, workspace_body(uri(host=private) + "?")))
    credential = FakeCredential()
    address = resolve(credential=credential, api_version="2023-04-01")
    assert address.host == private and address.region == "westeurope"
    assert address.arm_id == ARM
    (request,) = adapter.seen
    assert request.method == "GET"
    assert request.url == f"https://management.azure.com{ARM}?api-version=2023-04-01"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert "spark-aml-bridge/" in request.headers["User-Agent"]
    assert credential.scopes == [("https://management.azure.com/.default",)]


def test_resolve_falls_back_to_location(fake_arm):
    fake_arm((200, workspace_body(uri_value=None, location="northeurope")))
    address = resolve()
    assert (address.host, address.region) == ("northeurope.api.azureml.ms", "northeurope")


def test_resolve_in_another_cloud_uses_its_scope_and_suffix(fake_arm):
    adapter = fake_arm((200, workspace_body(uri_value="", location="chinaeast2")))
    credential = FakeCredential()
    address = resolve(credential=credential, arm_endpoint="https://management.chinacloudapi.cn/")
    assert address.host == "chinaeast2.api.ml.azure.cn"
    assert credential.scopes == [("https://management.chinacloudapi.cn/.default",)]
    assert adapter.seen[0].url.startswith(f"https://management.chinacloudapi.cn{ARM}?")


def test_resolve_custom_endpoint_path_and_explicit_scope(fake_arm):
    adapter = fake_arm((200, workspace_body()))
    credential = FakeCredential()
    resolve(
        credential=credential, arm_endpoint="https://127.0.0.1:9/arm/", scope="api://x/.default"
    )
    assert adapter.seen[0].url.startswith(f"https://127.0.0.1:9/arm{ARM}?api-version=")
    assert credential.scopes == [("api://x/.default",)]


@pytest.mark.parametrize(
    "body, fragment",
    [
        (workspace_body(uri_value=None, location=None), "neither properties.mlFlowTrackingUri"),
        (workspace_body(uri_value="not a uri"), "tracking URI that cannot be used"),
        (workspace_body(uri_value=ARM), "without a host"),
    ],
)
def test_resolve_unusable_answers(fake_arm, body, fragment):
    fake_arm((200, body))
    with pytest.raises(WorkspaceAddressError, match=fragment) as info:
        resolve()
    assert "az ml workspace show" in str(info.value)


def test_resolve_non_json_answer(fake_arm):
    fake_arm((200, b"<html>proxy login</html>"))
    with pytest.raises(WorkspaceUnreachableError, match="not JSON"):
        resolve()


def test_resolve_404(fake_arm):
    body = {"error": {"code": "ResourceNotFound", "message": "The Resource was not found."}}
    fake_arm((404, body, {"x-ms-correlation-request-id": "corr-123"}))
    with pytest.raises(WorkspaceAddressError) as info:
        resolve()
    message = str(info.value)
    for fragment in (f"'{WS}'", f"'{RG}'", SUB, "ResourceNotFound", "corr-123"):
        assert fragment in message
    assert f"az ml workspace show -g {RG} -n {WS}" in message


def test_resolve_401_and_token_never_shown(fake_arm):
    body = {"error": {"code": "InvalidAuthenticationToken", "message": f"bad token {TOKEN}"}}
    fake_arm((401, body))
    with pytest.raises(CredentialError) as info:
        resolve()
    message = str(info.value)
    assert "rejected the token from FakeCredential" in message
    assert "InvalidAuthenticationToken" in message and "tenant" in message
    assert TOKEN not in message and "SECRETSIG" not in message and "<redacted>" in message


def test_resolve_403(fake_arm):
    body = {
        "error": {
            "code": "AuthorizationFailed",
            "message": "The client 'abc' does not have authorization to perform action "
            "'Microsoft.MachineLearningServices/workspaces/read'",
        }
    }
    fake_arm((403, body))
    with pytest.raises(CredentialError) as info:
        resolve()
    message = str(info.value)
    assert "AuthorizationFailed" in message and "client 'abc'" in message
    assert "Reader" in message and "Microsoft.MachineLearningServices/workspaces/read" in message
    assert TOKEN not in message


def test_resolve_retries_server_errors(fake_arm):
    adapter = fake_arm((503, {}), (200, workspace_body()))
    assert resolve().host == HOST
    assert len(adapter.seen) == 2


def test_resolve_gives_up_after_retries(fake_arm):
    adapter = fake_arm((500, {"error": {"code": "InternalServerError", "message": "boom"}}))
    with pytest.raises(WorkspaceUnreachableError) as info:
        resolve(retries=1)
    assert "HTTP 500" in str(info.value) and "InternalServerError" in str(info.value)
    assert len(adapter.seen) == 2


def test_resolve_other_status(fake_arm):
    fake_arm((400, {"error": {"code": "InvalidApiVersionParameter", "message": "no"}}))
    with pytest.raises(WorkspaceUnreachableError, match="HTTP 400.*InvalidApiVersionParameter"):
        resolve()


def test_resolve_connection_error_on_public_arm(fake_arm):
    fake_arm(requests.ConnectionError("Connection refused"))
    with pytest.raises(WorkspaceUnreachableError) as info:
        resolve(retries=0)
    message = str(info.value)
    assert "https://management.azure.com" in message and "Connection refused" in message
    assert "SPARK_AML_BRIDGE_ARM_ENDPOINT" in message
    assert "SPARK_AML_BRIDGE_CA_BUNDLE" not in message


def test_resolve_connection_error_on_custom_arm(fake_arm):
    fake_arm(requests.ConnectionError("Connection refused"))
    with pytest.raises(WorkspaceUnreachableError) as info:
        resolve(retries=0, arm_endpoint="https://arm.internal.example")
    message = str(info.value)
    assert "SPARK_AML_BRIDGE_ARM_ENDPOINT" in message and "SPARK_AML_BRIDGE_CA_BUNDLE" in message


def test_resolve_tls_error_names_ca_bundle(fake_arm):
    fake_arm(requests.exceptions.SSLError("CERTIFICATE_VERIFY_FAILED"))
    with pytest.raises(WorkspaceUnreachableError, match="SPARK_AML_BRIDGE_CA_BUNDLE"):
        resolve(retries=0)


def test_resolve_timeout(fake_arm):
    fake_arm(requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(WorkspaceUnreachableError, match="no answer within 7s"):
        resolve(retries=0, timeout=7)


def test_resolve_credential_failure(fake_arm):
    adapter = fake_arm((200, workspace_body()))
    credential = FakeCredential(ClientAuthenticationError("AADSTS7000215: Invalid client secret"))
    with pytest.raises(CredentialError) as info:
        resolve(credential=credential)
    message = str(info.value)
    assert "FakeCredential could not get an ARM token" in message and "AADSTS7000215" in message
    assert adapter.seen == []


def test_resolve_needs_a_credential(fake_arm):
    fake_arm((200, workspace_body()))
    with pytest.raises(CredentialError, match="no usable credential"):
        resolve(credential="not-a-credential")


@pytest.mark.parametrize(
    "endpoint",
    ["http://management.azure.com", "management.azure.com", "", "https://u:pw@arm.example"],
)
def test_resolve_rejects_bad_arm_endpoint(endpoint):
    with pytest.raises(ConfigError, match="SPARK_AML_BRIDGE_ARM_ENDPOINT") as info:
        resolve(arm_endpoint=endpoint)
    assert "pw@" not in str(info.value)


def test_resolve_rejects_missing_ca_bundle(tmp_path):
    with pytest.raises(ConfigError, match="SPARK_AML_BRIDGE_CA_BUNDLE"):
        resolve(ca_bundle=str(tmp_path / "nope.pem"))


def test_resolve_caches_per_endpoint_and_workspace(fake_arm):
    adapter = fake_arm((200, workspace_body()))
    assert resolve().host == HOST
    # Same workspace, ids differing only in case (ARM is case-insensitive): no second GET.
    again = resolve_workspace_host(parse_workspace(ARM.upper()), FakeCredential())
    assert again.host == HOST
    assert resolve(credential=FakeCredential(RuntimeError("must not be called"))).host == HOST
    assert len(adapter.seen) == 1
    resolve(arm_endpoint="https://arm.other.example")
    assert len(adapter.seen) == 2
    clear_resolution_cache()
    resolve()
    assert len(adapter.seen) == 3


def test_resolve_does_not_cache_failures(fake_arm):
    adapter = fake_arm((404, {}), (200, workspace_body()))
    with pytest.raises(WorkspaceAddressError):
        resolve()
    assert resolve().host == HOST
    assert len(adapter.seen) == 2


def test_resolve_is_single_flight_across_threads(fake_arm):
    adapter = fake_arm((200, workspace_body()), delay=0.2)
    hosts: list[str] = []

    def worker() -> None:
        hosts.append(resolve().host)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert hosts == [HOST] * 8
    assert len(adapter.seen) == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- integration: the local emulator's ARM and authority ----------------------------------------


# `emulator` is the session-wide emulator from conftest.py.


def emulator_credential(info: dict[str, Any], secret: str | None = None) -> Any:
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        info["tenant_id"],
        info["client_id"],
        secret or info["client_secret"],
        authority=info["authority"],
        disable_instance_discovery=True,
        connection_verify=info["ca_bundle"],
    )


def arm_requests(handle: Any) -> int:
    # Read the admin API directly with an explicit CA: a session-level `verify` loses to
    # REQUESTS_CA_BUNDLE in requests, and that variable is set on many machines.
    from spark_aml_bridge.emulator.contract import ADMIN_KEY_HEADER

    info = handle.info
    answer = requests.get(
        info["admin_url"] + "/stats",
        headers={ADMIN_KEY_HEADER: info["admin_key"]},
        verify=info["ca_bundle"],
        timeout=10,
    )
    answer.raise_for_status()
    return answer.json()["arm_requests"]


def resolve_on(handle: Any, address: WorkspaceAddress, credential: Any, **kwargs: Any) -> Any:
    info = handle.info
    kwargs.setdefault("arm_endpoint", info["arm_endpoint"])
    kwargs.setdefault("ca_bundle", info["ca_bundle"])
    return resolve_workspace_host(address, credential, **kwargs)


def test_emulator_resolves_its_host(emulator):
    info = emulator.info
    assert not is_known_authority(info["authority"])  # so instance discovery must be off
    address = parse_workspace(info["workspace_arm_id"])
    assert address.host is None
    resolved = resolve_on(emulator, address, emulator_credential(info))
    expected = parse_workspace(info["tracking_uri"])
    assert resolved.host == expected.host
    assert resolved == dataclasses.replace(expected, region=info["region"])
    assert resolved.tracking_uri() == info["tracking_uri"]
    assert resolved.rest_base.startswith(f"https://{expected.host}/mlflow/v2.0/subscriptions/")


def test_emulator_unknown_workspace(emulator):
    info = emulator.info
    address = workspace_from_parts(info["subscription_id"], info["resource_group"], "no-such-ws")
    with pytest.raises(WorkspaceAddressError) as error:
        resolve_on(emulator, address, emulator_credential(info))
    message = str(error.value)
    assert "'no-such-ws'" in message and "ResourceNotFound" in message
    assert f"az ml workspace show -g {info['resource_group']} -n no-such-ws" in message


def test_emulator_unknown_resource_group(emulator):
    info = emulator.info
    address = workspace_from_parts(info["subscription_id"], "rg-missing", info["workspace_name"])
    with pytest.raises(WorkspaceAddressError, match="ResourceGroupNotFound"):
        resolve_on(emulator, address, emulator_credential(info))


def test_emulator_wrong_secret(emulator):
    info = emulator.info
    wrong = "xyz8Q~" + "w" * 34
    with pytest.raises(CredentialError) as error:
        resolve_on(
            emulator, parse_workspace(info["workspace_arm_id"]), emulator_credential(info, wrong)
        )
    message = str(error.value)
    assert "ClientSecretCredential could not get an ARM token" in message
    assert wrong not in message and info["client_secret"] not in message


def test_emulator_rejects_a_bad_token(emulator):
    info = emulator.info
    with pytest.raises(CredentialError) as error:
        resolve_on(emulator, parse_workspace(info["workspace_arm_id"]), FakeCredential())
    message = str(error.value)
    assert "rejected the token" in message and "HTTP" not in message
    assert TOKEN not in message


def test_emulator_arm_down(emulator):
    info = emulator.info
    endpoint = f"https://127.0.0.1:{closed_port()}"
    with pytest.raises(WorkspaceUnreachableError) as error:
        resolve_on(
            emulator,
            parse_workspace(info["workspace_arm_id"]),
            emulator_credential(info),
            arm_endpoint=endpoint,
            retries=1,
        )
    message = str(error.value)
    assert endpoint in message
    assert "SPARK_AML_BRIDGE_ARM_ENDPOINT" in message and "SPARK_AML_BRIDGE_CA_BUNDLE" in message


def test_emulator_tls_needs_its_ca(emulator, monkeypatch):
    info = emulator.info
    # Point default verification at an empty-of-this-CA bundle, whatever the machine has set.
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(WorkspaceUnreachableError) as error:
        resolve_on(
            emulator,
            parse_workspace(info["workspace_arm_id"]),
            emulator_credential(info),
            ca_bundle=None,
            retries=0,
        )
    message = str(error.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "SPARK_AML_BRIDGE_CA_BUNDLE" in message


def test_emulator_lookup_is_cached(emulator):
    info = emulator.info
    address = parse_workspace(info["workspace_arm_id"])
    before = arm_requests(emulator)
    first = resolve_on(emulator, address, emulator_credential(info))
    assert arm_requests(emulator) == before + 1
    # The second lookup needs neither ARM nor a token.
    again = resolve_on(emulator, address, FakeCredential(RuntimeError("must not be called")))
    assert again == first
    assert arm_requests(emulator) == before + 1
    clear_resolution_cache()
    resolve_on(emulator, address, emulator_credential(info))
    assert arm_requests(emulator) == before + 2
