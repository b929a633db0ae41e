"""Building the worker's app creates every topic it reads or writes a changelog to, before Faust subscribes.

A changelog that Faust declares itself at start-up can be missing from the group's first metadata snapshot; the
snapshot then records it with 0 partitions until the next refresh, and every table write of the merger raised
``PartitionsMismatch`` for minutes (CI saw no list published in 180 s). Importing ``streams.app`` must not call
the broker at all: the app is built when Faust asks for it.
"""

from __future__ import annotations

import importlib

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType

from streams.app import build_app
from streams.topics import REKEY_RETENTION_MS, InternalTopic
from streams.config import WorkerConfig
from streams.kafka_io import create_topics
from streams.settings import KafkaSettings, TopicNames

from .conftest import KafkaEndpoint

pytestmark = [pytest.mark.kafka]


def _describe(bootstrap: str, names: list[str]) -> tuple[dict[str, int], dict[str, dict[str, str]]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        partitions = {d.get("topic", d.get("name")): len(d["partitions"]) for d in admin.describe_topics(names)
                      if d.get("error_code", 0) == 0}
        response = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in partitions])
        # {"topic": {name: {config: {"value": ...}}}}: the topic's own configs, broker defaults left out
        configs = {name: {key: entry["value"] for key, entry in entries.items()}
                   for name, entries in response["topic"].items()}
        return partitions, configs
    finally:
        admin.close()


def test_building_the_app_creates_its_internal_topics_and_changelogs(kafka: KafkaEndpoint, tmp_path) -> None:
    prefix = "internal"
    topics = TopicNames(f"{prefix}-interactions", f"{prefix}-items", f"{prefix}-trending", f"{prefix}-dlq")
    create_topics(KafkaSettings(kafka.bootstrap_servers), topics, partitions=3)
    config = WorkerConfig(app_id=f"{prefix}-app", kafka=KafkaSettings(kafka.bootstrap_servers), topics=topics,
                          data_dir=str(tmp_path / "state"))
    app = build_app(config)  # not started: whatever exists now, Faust found before it subscribed

    changelogs = {table.changelog_topic_name: table for table in app.tables.values()}
    assert set(changelogs) == {f"{prefix}-app-state-changelog", f"{prefix}-app-merger-changelog"}
    expected = {f"{prefix}-app-ticks": 3, f"{prefix}-app-rekeyed": 3, f"{prefix}-app-items-rekeyed": 3,
                config.summaries_topic: 1, f"{prefix}-app-state-changelog": 3, f"{prefix}-app-merger-changelog": 1}
    partitions, configs = _describe(kafka.bootstrap_servers, list(expected))
    assert partitions == expected
    for name, table in changelogs.items():
        assert table.changelog_topic.partitions == expected[name]  # what Faust itself would declare
        assert configs[name]["cleanup.policy"] == InternalTopic.changelog(table).configs["cleanup.policy"] == "compact"
    assert configs[f"{prefix}-app-rekeyed"].get("cleanup.policy", "delete") == "delete"
    assert configs[f"{prefix}-app-rekeyed"]["retention.ms"] == str(REKEY_RETENTION_MS)


def test_importing_the_app_module_calls_no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    # a bootstrap address where nothing listens: building the app would fail, importing must not
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    module = importlib.reload(importlib.import_module("streams.app"))
    assert callable(module.build_app)
    with pytest.raises(AttributeError):
        module.not_an_attribute  # noqa: B018
