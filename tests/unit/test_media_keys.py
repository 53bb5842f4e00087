"""The media object key layout: what fits, and the reason given for what does not."""

from __future__ import annotations

import pytest

from events.media_keys import KeyLayoutError, MediaKey, build_key, parse_key

ORG = "org_01900000-0000-7000-8000-000000000001"
BRN = "brn_01900000-0000-7000-8000-000000000002"
PRJ = "prj_01900000-0000-7000-8000-000000000003"
BASE = f"orgs/{ORG}/branches/{BRN}/projects/{PRJ}"


@pytest.mark.parametrize(
    ("key", "file_type", "name", "watermark"),
    [
        (f"{BASE}/delivery/IMG_0001.jpg", "delivery", "IMG_0001.jpg", "clean"),
        (f"{BASE}/proxy/ceremony/IMG_0002.jpg", "proxy", "ceremony/IMG_0002.jpg", "proof"),
        (f"{BASE}/raw/IMG_0003.CR3", "raw", "IMG_0003.CR3", None),
        (f"{BASE}/ingest/card-A/DCIM/100/IMG_4.ARW", "ingest", "card-A/DCIM/100/IMG_4.ARW", None),
        (f"{BASE}/delivery/शादी फ़ोटो.jpg", "delivery", "शादी फ़ोटो.jpg", "clean"),
    ],
)
def test_a_key_in_the_layout_names_its_tenant_project_and_file_type(
    key: str, file_type: str, name: str, watermark: str | None
) -> None:
    parsed = parse_key(key)
    assert parsed == MediaKey(ORG, BRN, PRJ, file_type, name)
    assert parsed.watermark_state == watermark
    assert parsed.key == key == build_key(ORG, BRN, PRJ, file_type, name)


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("studios/st_01/shoots/sh_9/raw/IMG_0001.CR3", "does not follow"),
        (f"{BASE}/delivery", "does not follow"),
        (f"{BASE}/delivery/", "empty, '.' or '..' segment"),
        (f"{BASE}/delivery/a//b.jpg", "empty, '.' or '..' segment"),
        (f"{BASE}/delivery/../../x.jpg", "empty, '.' or '..' segment"),
        (f"{BASE}/thumbs/IMG_1.jpg", "file type 'thumbs' is not one of proxy, raw, delivery, ingest"),
        (f"{BASE}/Delivery/IMG_1.jpg", "file type 'Delivery'"),
        (f"tenants/{ORG}/branches/{BRN}/projects/{PRJ}/raw/x", "segment 1 must be 'orgs'"),
        (f"orgs/{ORG}/branch/{BRN}/projects/{PRJ}/raw/x", "segment 3 must be 'branches'"),
        (f"orgs/{BRN}/branches/{BRN}/projects/{PRJ}/raw/x", "has prefix 'brn'; expected 'org'"),
        (f"orgs/{ORG}/branches/{BRN}/projects/prj_01900000-0000-4000-8000-000000000003/raw/x",
         "not a UUID version 7"),
        (f"orgs/{ORG.upper()}/branches/{BRN}/projects/{PRJ}/raw/x", "has prefix 'ORG'"),
        (f"{BASE}/raw/a\nb.jpg", "control character"),
        (f"{BASE}/raw/" + "x" * 1000, "longer than 1024 bytes"),
    ],
)
def test_a_key_outside_the_layout_is_refused_with_the_reason(key: str, reason: str) -> None:
    with pytest.raises(KeyLayoutError, match=None) as caught:
        parse_key(key)
    assert reason in str(caught.value)
