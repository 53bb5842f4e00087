"""Reading Prometheus text in tests: the families, and one sample's value by name and labels."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

# The catalogue the alert rules (ops/prometheus/alerts.yml) are written against: family → (type, labels).
INGRESS_CATALOGUE = {
    "studiovault_ingress_requests": ("counter", {"source", "code"}),
    "studiovault_ingress_signature_failures": ("counter", {"source"}),
    "studiovault_ingress_request_body_bytes": ("histogram", {"source"}),
    "studiovault_ingress_request_duration_seconds": ("histogram", {"source"}),
    "studiovault_ingress_publish_failures": ("counter", {"source"}),
}
WORKER_CATALOGUE = {
    "studiovault_events": ("counter", {"type", "outcome"}),
    "studiovault_event_apply_duration_seconds": ("histogram", {"type"}),
    "studiovault_event_end_to_end_seconds": ("histogram", {"type"}),
    "studiovault_version_conflicts": ("counter", {"type"}),
    "studiovault_notification_sends": ("counter", {"channel", "outcome"}),
    "studiovault_notification_cost_paise": ("counter", {"channel"}),
    "studiovault_billing_closes": ("counter", {"outcome"}),
    "studiovault_database_errors": ("counter", {"kind"}),
    "studiovault_redis_errors": ("counter", {"kind"}),
    "studiovault_worker_heartbeat_timestamp_seconds": ("gauge", set()),
}
STATE_CATALOGUE = {
    "studiovault_inbox_events": ("gauge", {"status"}),
    "studiovault_inbox_oldest_pending_age_seconds": ("gauge", set()),
    "studiovault_queue_depth": ("gauge", set()),
    "studiovault_pipeline_state_timestamp_seconds": ("gauge", set()),
}


@dataclass(frozen=True)
class Scrape:
    text: str

    def families(self) -> dict[str, tuple[str, set[str]]]:
        """Each family's type and the label names its samples carry (`le` of histograms left out)."""
        found: dict[str, tuple[str, set[str]]] = {}
        for family in text_string_to_metric_families(self.text):
            labels = {name for sample in family.samples for name in sample.labels if name != "le"}
            found[family.name] = (family.type, labels)
        return found

    def value(self, name: str, **labels: str) -> float:
        """The sample `name` (full sample name, e.g. `studiovault_events_total`) with exactly `labels`;
        0.0 when the series is absent."""
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0

    def has(self, name: str) -> bool:
        return any(s.name == name for f in text_string_to_metric_families(self.text) for s in f.samples)


def promtool_check_metrics(text: str) -> None:
    """`promtool check metrics` must accept `text` (lint problems included). promtool ships with Debian's
    `prometheus` package: a missing one is a failure, never a skip."""
    promtool = shutil.which("promtool")
    assert promtool, ("promtool is not installed: `apt-get install -y prometheus` (Debian/Ubuntu; stop the "
                      "prometheus service it starts) or get it from prometheus.io; ./dev test installs it")
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, f"promtool check metrics: {result.stdout}{result.stderr}"
