"""Alerts for data-quality failures: one notification per configured channel, a
Slack-compatible incoming webhook and/or an email over SMTP (``[alerts]`` in ``weir.toml``,
``WEIR_ALERT_*``; see ``docs/configuration.md``).

    from weir import alerts

    deliveries = alerts.send(alerts.Alert(
        title="shop_events: 2 critical expectations failed",
        text="Run 7f3c checked snapshots 10..12 of raw.shop_events.",
        severity="critical",
        run_id="7f3c",
        details=[{"table": "raw.shop_events", "expectation": "expect_column_values_to_not_be_null",
                  "column": "user_id", "unexpected_count": 3, "sample_ids": ["e1", "e2", "e3"]}],
        links={"Data Docs": "file:///home/x/.weir/quality/docs/index.html"},
    ))

A channel is tried ``retries`` times with a doubling wait between attempts; one that still
fails is logged (``alert_failed``, a JSON line on stderr) and reported in its
:class:`Delivery`. :func:`send` never raises because of a channel: an alert must not fail the
validation that raised it. Deciding *whether* to alert (critical failures only, once per run)
is the caller's business.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import httpx

from weir.config import AlertSettings, alert_settings
from weir.logs import json_logger, log_event

_log = json_logger("weir.alerts")

# What a webhook message shows of each detail; the email shows everything.
_WEBHOOK_DETAILS = 10
_WEBHOOK_SAMPLE_IDS = 5
_SLACK_SECTION_CHARS = 3000  # Slack refuses longer section texts
_DETAIL_KEYS = ("table", "expectation", "column", "unexpected_count", "sample_ids")


@dataclass(frozen=True)
class Alert:
    """One notification. ``details`` has one dict per failed check, with (any of) ``table``,
    ``expectation``, ``column``, ``unexpected_count``, ``sample_ids`` and whatever else is
    worth showing; ``links`` maps a label to a URL (Data Docs, the dashboard)."""

    title: str
    text: str
    severity: str
    run_id: str
    details: list[dict[str, Any]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delivery:
    """How one channel fared: ``attempts`` made, and the last error when ``ok`` is false."""

    channel: str
    ok: bool
    attempts: int
    error: str | None = None


def send(alert: Alert, settings: AlertSettings | None = None) -> list[Delivery]:
    """Sends ``alert`` to every configured channel (webhook first, then email); one
    :class:`Delivery` per channel, none when no channel is configured. ``settings`` default
    to :func:`weir.config.alert_settings`, whose :class:`weir.ConfigError` for a bad
    configuration is the one thing this raises (read the settings when a run starts to fail
    before any work)."""
    settings = settings or alert_settings()
    senders: dict[str, Callable[[], None]] = {
        "webhook": lambda: _post_webhook(alert, settings),
        "email": lambda: _send_email(alert, settings),
    }
    return [_deliver(channel, senders[channel], alert, settings) for channel in settings.channels]


def _deliver(
    channel: str, attempt: Callable[[], None], alert: Alert, settings: AlertSettings
) -> Delivery:
    error = ""
    for number in range(1, settings.retries + 1):
        if number > 1:
            time.sleep(settings.retry_backoff_seconds * 2 ** (number - 2))
        try:
            attempt()
        except Exception as e:  # any failure of a channel is retried, then reported
            error = _describe(e, settings)
            continue
        log_event(_log, "alert_sent", channel=channel, attempts=number, **_facts(alert))
        return Delivery(channel, True, number)
    log_event(
        _log,
        "alert_failed",
        logging.ERROR,
        channel=channel,
        attempts=settings.retries,
        error=error,
        **_facts(alert),
    )
    return Delivery(channel, False, settings.retries, error)


def _facts(alert: Alert) -> dict[str, str]:
    return {"run_id": alert.run_id, "severity": alert.severity, "title": alert.title}


class _RefusedError(Exception):
    """The webhook answered something other than 2xx."""


def _describe(error: Exception, settings: AlertSettings) -> str:
    if isinstance(error, httpx.TimeoutException):
        text = f"timed out after {settings.timeout_seconds:g} s ({type(error).__name__})"
    elif isinstance(error, _RefusedError):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {error}"
    if settings.webhook_url:  # its path is a secret; httpx's messages may quote it
        text = text.replace(settings.webhook_url, "<webhook URL>")
    return text


# -- the webhook -------------------------------------------------------------------------


def _post_webhook(alert: Alert, settings: AlertSettings) -> None:
    assert settings.webhook_url is not None
    response = httpx.post(
        settings.webhook_url, json=webhook_payload(alert), timeout=settings.timeout_seconds
    )
    if not response.is_success:
        raise _RefusedError(f"HTTP {response.status_code}: {response.text[:200]}")


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The Slack-compatible JSON body: ``text`` (what notifications show) and ``blocks``,
    mrkdwn sections for the title, the summary, the first details and the links."""
    severity, run_id = _mrkdwn(alert.severity), _mrkdwn(alert.run_id)
    sections = [
        f"*{_mrkdwn(alert.title)}*",
        f"{_mrkdwn(alert.text)}\nseverity: *{severity}* · run `{run_id}`",
    ]
    if alert.details:
        lines = [
            f"• {_mrkdwn(_detail_line(detail, _WEBHOOK_SAMPLE_IDS))}"
            for detail in alert.details[:_WEBHOOK_DETAILS]
        ]
        if len(alert.details) > _WEBHOOK_DETAILS:
            lines.append(f"… and {len(alert.details) - _WEBHOOK_DETAILS} more")
        sections.append("\n".join(lines))
    if alert.links:
        sections.append(
            " · ".join(
                f"<{_mrkdwn(url).replace('|', '%7C')}|{_mrkdwn(label)}>"
                for label, url in alert.links.items()
            )
        )
    return {
        "text": _mrkdwn(f"[weir] {alert.severity}: {alert.title}"),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text)}}
            for text in sections
        ],
    }


def _mrkdwn(text: str) -> str:
    """Slack's three control characters escaped (its documented rule)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str) -> str:
    return text if len(text) <= _SLACK_SECTION_CHARS else text[: _SLACK_SECTION_CHARS - 1] + "…"


def _detail_line(detail: dict[str, Any], max_sample_ids: int | None = None) -> str:
    """``raw.shop_events.user_id: expect_column_values_to_not_be_null, 3 unexpected (sample
    ids: e1, e2, e3)``; other keys follow as ``key=value``."""
    where = ".".join(str(detail[key]) for key in ("table", "column") if detail.get(key))
    line = ": ".join(part for part in (where, str(detail.get("expectation") or "")) if part)
    if detail.get("unexpected_count") is not None:
        line += f", {detail['unexpected_count']} unexpected"
    sample_ids = [str(i) for i in detail.get("sample_ids") or []]
    if sample_ids:
        shown = sample_ids if max_sample_ids is None else sample_ids[:max_sample_ids]
        more = f" and {len(sample_ids) - len(shown)} more" if len(shown) < len(sample_ids) else ""
        line += f" (sample ids: {', '.join(shown)}{more})"
    others = [f"{key}={value}" for key, value in detail.items() if key not in _DETAIL_KEYS]
    if others:
        line += f"; {', '.join(others)}"
    return line


# -- email --------------------------------------------------------------------------------


def email_message(alert: Alert, settings: AlertSettings) -> EmailMessage:
    """The email: subject ``[weir] <severity>: <title>`` and a plain-text body with the same
    facts as the webhook message, every detail and sample id included."""
    assert settings.email_from is not None
    message = EmailMessage()
    message["Subject"] = f"[weir] {alert.severity}: {alert.title}"
    message["From"] = settings.email_from
    message["To"] = ", ".join(settings.email_to)
    message["Date"] = formatdate(usegmt=True)
    # The sender's domain, not socket.getfqdn(), which may wait on DNS.
    message["Message-ID"] = make_msgid(domain=settings.email_from.rpartition("@")[2])
    message["X-Weir-Run-Id"] = alert.run_id
    body = [alert.title, "", alert.text, "", f"Severity: {alert.severity}", f"Run: {alert.run_id}"]
    if alert.details:
        body += ["", f"Failed checks ({len(alert.details)}):"]
        body += [f"- {_detail_line(detail)}" for detail in alert.details]
    if alert.links:
        body += ["", "Links:"]
        body += [f"- {label}: {url}" for label, url in alert.links.items()]
    message.set_content("\n".join(body) + "\n")
    return message


def _send_email(alert: Alert, settings: AlertSettings) -> None:
    assert settings.smtp_host is not None
    message = email_message(alert, settings)
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.timeout_seconds
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=ssl.create_default_context())
        if settings.smtp_username and settings.smtp_password:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(message)
