"""Message templates per notification kind: the ordered body parameters of the provider template
(WhatsApp template `{{1}}..`, MSG91 `VAR1..`) and the e-mail subject and text. A new kind is one
entry in `TEMPLATES` plus its approved WhatsApp template and DLT template id."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from events.notifications import Channel


@dataclass(frozen=True)
class Facts:
    """What templates may mention, read from the project, client, org, branch and invoice."""

    client_name: str
    studio_name: str
    branch_name: str
    project_title: str
    invoice_ref: str = ""
    amount_paise: int | None = None
    due_at: datetime | None = None
    timezone: ZoneInfo | None = None


@dataclass(frozen=True)
class Template:
    params: tuple[str, ...]  # fact names, in the provider template's order
    subject: str  # str.format over the same facts
    text: str
    needs_invoice: bool = False


TEMPLATES: dict[str, Template] = {
    "booking_confirmed": Template(
        ("client_name", "project_title", "studio_name"),
        "Your booking with {studio_name} is confirmed",
        "Hi {client_name}, your booking for {project_title} with {studio_name} is confirmed. See you soon!",
    ),
    "invoice_due": Template(
        ("client_name", "amount", "invoice_ref", "due_date"),
        "Invoice {invoice_ref} is due on {due_date}",
        "Hi {client_name}, invoice {invoice_ref} for {amount} from {studio_name} is due on {due_date}.",
        needs_invoice=True,
    ),
    "photos_ready": Template(
        ("client_name", "project_title", "studio_name"),
        "Your photos from {studio_name} are ready",
        "Hi {client_name}, your photos for {project_title} are ready to view. - {studio_name}",
    ),
}


@dataclass(frozen=True)
class Rendered:
    params: tuple[str, ...]
    subject: str
    text: str
    html: str


def format_inr(paise: int, symbol: str = "₹") -> str:
    """Indian digit grouping: 499900 → ₹4,999.00; 12345650 → ₹1,23,456.50."""
    sign = "-" if paise < 0 else ""
    rupees, rest = divmod(abs(paise), 100)
    digits = str(rupees)
    head, tail = digits[:-3], digits[-3:]
    groups: list[str] = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    if head:
        groups.insert(0, head)
    grouped = ",".join([*groups, tail])
    return f"{sign}{symbol}{grouped}.{rest:02d}"


def render(kind: str, facts: Facts, channel: Channel) -> Rendered:
    """The message for `kind`; KeyError for a kind without a template."""
    template = TEMPLATES[kind]
    values = {
        "client_name": facts.client_name, "studio_name": facts.studio_name, "branch_name": facts.branch_name,
        "project_title": facts.project_title, "invoice_ref": facts.invoice_ref,
        # DLT SMS templates carry the "Rs." text themselves and stay GSM-7: no rupee sign there.
        "amount": format_inr(facts.amount_paise, "" if channel == "sms" else "₹")
        if facts.amount_paise is not None else "",
        "due_date": facts.due_at.astimezone(facts.timezone).strftime("%d %b %Y")
        if facts.due_at and facts.timezone else "",
    }
    text = template.text.format(**values)
    return Rendered(
        params=tuple(values[name] for name in template.params),
        subject=template.subject.format(**values),
        text=text,
        html=f"<p>{html.escape(text)}</p>",
    )
