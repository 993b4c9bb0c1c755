"""Optional mirrored model registrations (setting ``dual_mirror_registry``).

With it, ``connect(mode="dual")`` points MLflow's registry URI at the same ``dual:`` URI and
MLflow builds this store: the primary registry answers every call, and registry writes go
through the tracking store's spool like any other write. On the mirror, a model version's
source is translated to the mirror's copy (the mirrored logged model, or the mirrored run's
artifacts, copied on demand first), versions are matched by a ``spark_aml_bridge.primary.version``
tag (version numbers are assigned by each registry), and model names are kept as they are.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from mlflow.store.model_registry.abstract_store import AbstractStore

from spark_aml_bridge.dual.failures import Pending, ignore_missing
from spark_aml_bridge.dual.sides import build_registry_store
from spark_aml_bridge.dual.uri import parse_dual_uri

if TYPE_CHECKING:
    from spark_aml_bridge.dual.mirror import Mirror

_log = logging.getLogger(__name__)
PRIMARY_VERSION_TAG = "spark_aml_bridge.primary.version"


class DualRegistryStore(AbstractStore):
    """The primary's registry, with writes spooled for the mirror's registry."""

    def __init__(self, store_uri: str, tracking_uri: str | None = None) -> None:
        self.store_uri = store_uri
        self.primary_uri, self.mirror_uri = parse_dual_uri(store_uri)
        self.primary = build_registry_store(self.primary_uri)
        try:
            super().__init__(store_uri=self.primary_uri, tracking_uri=self.primary_uri)
        except TypeError:  # MLflow 2
            super().__init__()

    def _record(self, kind: str, payload: dict[str, Any]) -> None:
        from spark_aml_bridge.mlflow_private import cached_tracking_store

        store = cached_tracking_store(self.store_uri)  # the dual tracking store of the same URI
        store._record(kind, None, payload)

    # -- registered models ------------------------------------------------------------------
    def create_registered_model(
        self, name: str, tags: Any = None, description: Any = None, *args: Any, **kw: Any
    ) -> Any:
        model = self.primary.create_registered_model(name, tags, description, *args, **kw)
        self._record(
            "reg_model",
            {"name": name, "t": [[t.key, t.value] for t in tags or ()], "d": description},
        )
        return model

    def update_registered_model(self, name: str, description: Any, *args: Any, **kw: Any) -> Any:
        model = self.primary.update_registered_model(name, description, *args, **kw)
        self._record("reg_model_description", {"name": name, "d": description})
        return model

    def delete_registered_model(self, name: str) -> None:
        self.primary.delete_registered_model(name)
        self._record("reg_delete_model", {"name": name})

    def set_registered_model_tag(self, name: str, tag: Any) -> None:
        self.primary.set_registered_model_tag(name, tag)
        self._record("reg_model_tag", {"name": name, "k": tag.key, "v": tag.value})

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self.primary.delete_registered_model_tag(name, key)
        self._record("reg_delete_model_tag", {"name": name, "k": key})

    # -- versions ---------------------------------------------------------------------------
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        tags: Any = None,
        run_link: str | None = None,
        description: str | None = None,
        local_model_path: str | None = None,
        model_id: str | None = None,
    ) -> Any:
        kwargs: dict[str, Any] = {}
        if model_id is not None:
            kwargs["model_id"] = model_id
        version = self.primary.create_model_version(
            name, source, run_id, tags, run_link, description, local_model_path, **kwargs
        )
        self._record(
            "reg_version",
            {
                "name": name,
                "version": str(version.version),
                "source": source,
                "run": run_id,
                "model": model_id,
                "t": [[t.key, t.value] for t in tags or ()],
                "d": description,
            },
        )
        return version

    def update_model_version(self, name: str, version: str, description: str) -> Any:
        result = self.primary.update_model_version(name, version, description)
        self._record(
            "reg_version_description", {"name": name, "version": str(version), "d": description}
        )
        return result

    def transition_model_version_stage(
        self, name: str, version: str, stage: str, archive_existing_versions: bool
    ) -> Any:
        result = self.primary.transition_model_version_stage(
            name, version, stage, archive_existing_versions
        )
        self._record(
            "reg_stage",
            {
                "name": name,
                "version": str(version),
                "stage": stage,
                "archive": bool(archive_existing_versions),
            },
        )
        return result

    def delete_model_version(self, name: str, version: str) -> None:
        self.primary.delete_model_version(name, version)
        self._record("reg_delete_version", {"name": name, "version": str(version)})

    def set_model_version_tag(self, name: str, version: str, tag: Any) -> None:
        self.primary.set_model_version_tag(name, version, tag)
        self._record(
            "reg_version_tag", {"name": name, "version": str(version), "k": tag.key, "v": tag.value}
        )

    def delete_model_version_tag(self, name: str, version: str, key: str) -> None:
        self.primary.delete_model_version_tag(name, version, key)
        self._record("reg_delete_version_tag", {"name": name, "version": str(version), "k": key})

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.primary.set_registered_model_alias(name, alias, version)
        self._record("reg_alias", {"name": name, "alias": alias, "version": str(version)})

    def delete_registered_model_alias(self, name: str, alias: str) -> None:
        self.primary.delete_registered_model_alias(name, alias)
        self._record("reg_delete_alias", {"name": name, "alias": alias})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "primary":
            raise AttributeError(name)
        return getattr(self.primary, name)


def _delegate(name: str) -> Any:
    def method(self: DualRegistryStore, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.primary, name)(*args, **kwargs)

    method.__name__ = name
    return method


for _name, _value in [(n, v) for base in AbstractStore.__mro__ for n, v in vars(base).items()]:
    if (
        callable(_value)
        and not _name.startswith("__")
        and _name not in vars(DualRegistryStore)
        and not isinstance(_value, (staticmethod, classmethod, property))
    ):
        setattr(DualRegistryStore, _name, _delegate(_name))


# -- applying registry operations to the mirror -------------------------------------------------
def apply(mirror: Mirror, kind: str, payload: dict[str, Any], age: float) -> None:
    from mlflow.entities.model_registry import ModelVersionTag, RegisteredModelTag
    from mlflow.exceptions import MlflowException

    registry = mirror.registry()
    name = payload["name"]
    if kind == "reg_model":
        try:
            tags = [RegisteredModelTag(k, v) for k, v in payload["t"]]
            registry.create_registered_model(name, tags, payload.get("d"))
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        return
    if kind == "reg_model_description":
        registry.update_registered_model(name, payload.get("d"))
    elif kind == "reg_delete_model":
        ignore_missing(lambda: registry.delete_registered_model(name))
    elif kind == "reg_model_tag":
        registry.set_registered_model_tag(name, RegisteredModelTag(payload["k"], payload["v"]))
    elif kind == "reg_delete_model_tag":
        ignore_missing(lambda: registry.delete_registered_model_tag(name, payload["k"]))
    elif kind == "reg_version":
        _create_version(mirror, registry, payload, age)
    elif kind == "reg_alias":
        registry.set_registered_model_alias(
            name, payload["alias"], _version(mirror, registry, name, payload["version"])
        )
    elif kind == "reg_delete_alias":
        ignore_missing(lambda: registry.delete_registered_model_alias(name, payload["alias"]))
    else:
        version = _version(mirror, registry, name, payload["version"])
        if kind == "reg_version_description":
            registry.update_model_version(name, version, payload.get("d"))
        elif kind == "reg_stage":
            registry.transition_model_version_stage(
                name, version, payload["stage"], payload["archive"]
            )
        elif kind == "reg_delete_version":
            ignore_missing(lambda: registry.delete_model_version(name, version))
        elif kind == "reg_version_tag":
            registry.set_model_version_tag(
                name, version, ModelVersionTag(payload["k"], payload["v"])
            )
        elif kind == "reg_delete_version_tag":
            ignore_missing(lambda: registry.delete_model_version_tag(name, version, payload["k"]))
        else:
            raise ValueError(f"unknown spooled registry operation '{kind}'")


def find_version(registry: Any, name: str, primary_version: str) -> str | None:
    for version in registry.search_model_versions(f"name = '{name}'"):
        if (version.tags or {}).get(PRIMARY_VERSION_TAG) == str(primary_version):
            return str(version.version)
    return None


def _version(mirror: Mirror, registry: Any, name: str, primary_version: str) -> str:

    key = f"{name}/{primary_version}"
    found = mirror.ids.get("version", key) or find_version(registry, name, primary_version)
    if found is None:
        raise Pending(f"model version {key} is not on the mirror yet")
    mirror.ids.put("version", key, found)
    return found


def _create_version(mirror: Mirror, registry: Any, payload: dict[str, Any], age: float) -> None:
    from mlflow.entities.model_registry import ModelVersionTag

    name, primary_version = payload["name"], payload["version"]
    if find_version(registry, name, primary_version) is not None:
        return
    source, run_id, model_id = payload["source"], None, None
    if payload.get("model") and mirror.native_logged_models():
        model_id = mirror.model_id(payload["model"], age=age)
        mirror.copy_model_artifacts(payload["model"], model_id)
        source = mirror.store.get_logged_model(model_id).artifact_location
    elif payload.get("model"):
        # The workspace keeps logged models as runs: register the model's run artifacts.
        model_id_on_mirror = mirror.model_id(payload["model"], age=age)
        mirror.copy_model_artifacts(payload["model"], model_id_on_mirror)
        source = mirror.store.get_logged_model(model_id_on_mirror).artifact_location
    if payload.get("run"):
        run_id = mirror.run_id(payload["run"], age=age)
        if not payload.get("model"):
            primary_root = mirror.primary.get_run(payload["run"]).info.artifact_uri
            from spark_aml_bridge.dual.artifacts import resolve_artifact_uri

            primary_root = resolve_artifact_uri(primary_root, mirror.primary_uri)
            mirror.copy_run_artifacts(payload["run"], run_id)  # on demand, before the run ends
            if source.startswith(primary_root):
                mirror_root = mirror.store.get_run(run_id).info.artifact_uri
                source = mirror_root.rstrip("/") + source[len(primary_root.rstrip("/")) :]
    tags = [ModelVersionTag(k, v) for k, v in payload["t"]]
    tags.append(ModelVersionTag(PRIMARY_VERSION_TAG, str(primary_version)))
    kwargs: dict[str, Any] = {}
    if model_id is not None:
        kwargs["model_id"] = model_id
    try:
        registry.create_registered_model(name)
    except Exception:  # noqa: BLE001 - it exists (the usual case)
        pass
    created = registry.create_model_version(
        name, source, run_id, tags, None, payload.get("d"), None, **kwargs
    )
    mirror.ids.put("version", f"{name}/{primary_version}", str(created.version))
