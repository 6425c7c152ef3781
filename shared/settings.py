"""The one source of configuration: environment variables prefixed CLOSEFLOW_ (or a .env file).

Each field's description is its documentation: `closeflow settings` prints them all, and
docs/reference/settings.md is generated from them (`make settings-doc`; a test keeps it current).
Workflow code never reads settings: what a journey needs arrives in its input.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.auth import Principal, has_role, parse_api_keys, parse_key_entry
from shared.codec import MasterKey, check_master_keys_for_production, parse_master_keys
from shared.errors import AppError
from shared.outbound import check_url
from shared.proxies import Network, parse_networks

SERVICES = ("prospecting", "outreach", "deals", "referrals")
DEV_API_KEY = "dev-key"


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# --- production secrets (issue 11) ---------------------------------------------------------------
# Secrets the operator generates: required, 32+ characters, never a placeholder.
REQUIRED_SECRETS = (
    "erasure_pepper",
    "twilio_auth_token",
    "service_token",
    "booking_link_secret",
)
# Secrets whose absence disables a feature (a provider's webhooks): empty, or as above.
OPTIONAL_SECRETS = ("mailgun_signing_key", "postmark_webhook_password")
# Secrets a provider issues with its own length (SMTP passwords, Temporal Cloud keys): empty or
# a real value, never a placeholder.
FOREIGN_SECRETS = ("smtp_password", "temporal_api_key", "imap_password")
MIN_SECRET_CHARS = 32
_PLACEHOLDER_PREFIXES = ("change-me", "changeme", "change_me", "dev-", "test-", "example", "your-")
# substrings no generated secret holds by chance (a bare "xxxx..." is caught as too uniform)
_PLACEHOLDER_WORDS = ("placeholder", "secret", "password", "changeit", "<", "${")


def _var(name: str) -> str:
    return f"CLOSEFLOW_{name.upper()}"


def _is_placeholder(value: str) -> bool:
    """A value copied from an example (or typed as one), not a generated secret."""
    lowered = value.strip().lower()
    if not lowered:
        return False
    return (
        lowered.startswith(_PLACEHOLDER_PREFIXES)
        or any(word in lowered for word in _PLACEHOLDER_WORDS)
        or len(set(lowered)) < 5  # xxxxxxxx..., 00000000...
    )


def _check_secret(name: str, value: str, *, required: bool) -> None:
    """Refuse a weak secret by its setting's name; the message never holds the value."""
    value = value.strip()
    if not value:
        if required:
            raise ValueError(f"{_var(name)} must be set in production")
        return
    if _is_placeholder(value):
        raise ValueError(f"{_var(name)} is a placeholder: set a generated secret")
    if len(value) < MIN_SECRET_CHARS:
        raise ValueError(f"{_var(name)} must be at least {MIN_SECRET_CHARS} characters")


# The public base URLs: what goes into every link a person opens and what the providers' signed
# webhooks are checked against (Twilio signs the URL it called).
PUBLIC_URLS = {
    "outreach_public_url": "its unsubscribe links and the URL Twilio's signatures cover",
    "referrals_public_url": "its referral links",
    "deals_public_url": "its booking links",
}


def _check_public_url(name: str, value: str, used_for: str) -> None:
    """Refuse a public URL nobody outside can reach (the development default is localhost):
    the shape the reps' webhook URLs must have in production, https and a public host."""
    try:
        check_url(value.strip(), production=True, field_name=_var(name))
    except AppError as err:
        problem = err.details[0]["problem"] if value.strip() and err.details else "not set"
        service = name.removesuffix("_public_url")
        raise ValueError(
            f"{_var(name)} must be the public https:// address of {service} in production "
            f"({used_for}): {problem}"
        ) from None


def _check_api_keys(entries: list[str]) -> None:
    entries = [entry for entry in entries if entry.strip()]
    if not entries:
        raise ValueError("CLOSEFLOW_API_KEYS must be set in production")
    for position, entry in enumerate(entries, start=1):
        where = f"CLOSEFLOW_API_KEYS entry {position}"
        if not has_role(entry):
            # a bare key is an admin key: in production the operator says so (admin:<key>)
            raise ValueError(f"{where} has no role: write admin:, ops: or rep:<rep_id>: before it")
        key, _ = parse_key_entry(entry, position)
        if key == DEV_API_KEY or _is_placeholder(key):
            raise ValueError(f"{where} is a placeholder: set a generated key")
        if len(key) < MIN_SECRET_CHARS:
            raise ValueError(f"{where} must be at least {MIN_SECRET_CHARS} characters")


class MissingSetting(ValueError):
    """A setting the process needs now is not set (its message names the variable)."""


class Settings(BaseSettings):
    # hide_input_in_errors: a validation error must not print the secrets it was given
    model_config = SettingsConfigDict(
        env_prefix="CLOSEFLOW_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    environment: Literal["development", "test", "production"] = Field(
        "development",
        description="production (what the image sets) refuses placeholder or short secrets, "
        "keys without a role, plain-HTTP providers, public URLs that are not public https "
        "addresses and serves no API docs; the dev stack and the tests set development and test",
    )
    data_dir: Path = Field(Path(".closeflow"), description="where the dev stack keeps its files")
    log_level: str = Field("INFO", description="log level of every process")

    # --- HTTP ---------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="interface the services listen on")
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=1_073_741_824,
        description="largest request body any service reads (webhooks included); a larger one "
        "is refused with 413 while it is read, before parsing and before the API key is checked",
    )
    inbound_email_max_body_bytes: int = Field(
        41_943_040,
        ge=1024,
        le=1_073_741_824,
        description="largest body of outreach's inbound email webhooks (/webhooks/mailgun/inbound "
        "and /webhooks/postmark/inbound): a reply with its attachments (Postmark posts them in "
        "base64, up to 35 MB); enforced as CLOSEFLOW_MAX_BODY_BYTES is, which every other "
        "route keeps",
    )
    prospecting_port: int = Field(8001, description="prospecting API port")
    outreach_port: int = Field(8002, description="outreach API port")
    deals_port: int = Field(8003, description="deals API port")
    referrals_port: int = Field(8004, description="referrals API port")
    prospecting_url: str = Field(
        "http://127.0.0.1:8001", description="where other services reach the prospecting API"
    )
    deals_url: str = Field(
        "http://127.0.0.1:8003", description="where other services reach the deals API"
    )
    outreach_url: str = Field(
        "http://127.0.0.1:8002", description="where other services reach the outreach API"
    )
    referrals_url: str = Field(
        "http://127.0.0.1:8004", description="where other services reach the referrals API"
    )
    # the defaults serve the dev stack; production refuses them (a public https address only)
    outreach_public_url: str = Field(
        "http://localhost:8002",
        description="public base URL of outreach: unsubscribe links and webhook signatures; "
        "in production a public https:// address",
    )
    referrals_public_url: str = Field(
        "http://localhost:8004",
        description="public base URL of referrals: referral links; in production a public "
        "https:// address",
    )
    deals_public_url: str = Field(
        "http://localhost:8003",
        description="public base URL of deals: booking links (issue 14); in production a "
        "public https:// address",
    )
    booking_link_secret: SecretStr = Field(
        SecretStr("dev-booking-link-secret"),
        description="secret key that checks the signed booking links sent before links were "
        "stored in deals (they work until they expire; changing it revokes them all)",
    )
    booking_link_days: int = Field(
        30,
        ge=1,
        le=365,
        description="days a booking link in a message stays valid (a touch reuses the "
        "prospect's link while it has more than half of them left)",
    )
    booking_rate_limit: int = Field(
        30,
        ge=1,
        description="requests per 10 minutes one client address may make to the booking pages "
        "(per process)",
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated networks (CIDR) of the reverse proxies in front of the "
        "services; X-Forwarded-For is believed only from these (empty: from nobody)",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=lambda: [SecretStr(DEV_API_KEY)],
        description="comma-separated API keys accepted in the X-API-Key header: a bare key or "
        "admin:<key> is an admin key, ops:<key> an ops key, rep:<rep_id>:<key> that rep's key",
    )

    erasure_pepper: SecretStr = Field(
        SecretStr("dev-erasure-pepper"),
        description="secret key of the HMAC-SHA256 digests that keep erased people suppressed "
        "(changing it forgets every erasure suppression)",
    )
    # --- workflow payload encryption (issue 11) ---
    payload_master_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="comma-separated <key id>:<base64 32-byte key> entries that wrap the "
        "per-prospect keys encrypting workflow payloads (the first wraps new keys, any one "
        "unwraps: put a new key first to rotate); required in production, generate one with "
        "`closeflow payload-key <id>`; empty outside production: payloads in clear text",
    )
    codec_cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="comma-separated origins (e.g. the Temporal UI's https://temporal.example.com) "
        "allowed to call prospecting's codec server (POST /codec/decode, "
        "/codec/workflows/<id>/encode and /decode)",
    )

    api_docs: bool = Field(
        False,
        description="in production, serve /docs, /redoc and /openapi.json (to API key holders "
        "only: X-API-Key header); outside production they are always served",
    )
    allow_insecure_providers: bool = Field(
        False,
        description="in production, allow a plain-HTTP CLOSEFLOW_TWILIO_API_BASE_URL and "
        "CLOSEFLOW_SMTP_TLS=none (e.g. a TLS-terminating relay on the same host)",
    )

    # --- databases ----------------------------------------------------------------------------
    prospecting_database_url: str = Field(
        "",
        description="SQLAlchemy async URL; empty: sqlite+aiosqlite in data_dir, outside "
        "production only (production refuses to open a database without its URL; every "
        "process opens prospecting's, where the payload keys are)",
    )
    outreach_database_url: str = Field("", description="as above, for outreach")
    deals_database_url: str = Field("", description="as above, for deals")
    referrals_database_url: str = Field("", description="as above, for referrals")

    # --- Temporal -----------------------------------------------------------------------------
    temporal_address: str = Field("localhost:7233", description="Temporal frontend host:port")
    temporal_namespace: str = Field("default", description="Temporal namespace")
    temporal_api_key: SecretStr = Field(SecretStr(""), description="Temporal Cloud API key")
    temporal_tls: bool = Field(False, description="use TLS to reach Temporal (Temporal Cloud)")
    # --- Temporal mTLS (issue 12): a self-hosted frontend that asks for client certificates ---
    temporal_tls_cert: str = Field(
        "",
        description="PEM file of the client certificate shown to a Temporal frontend that "
        "requires mTLS (with CLOSEFLOW_TEMPORAL_TLS_KEY); any CLOSEFLOW_TEMPORAL_TLS_* file "
        "turns TLS on",
    )
    temporal_tls_key: str = Field(
        "", description="PEM file of the private key of CLOSEFLOW_TEMPORAL_TLS_CERT"
    )
    temporal_tls_ca: str = Field(
        "",
        description="PEM file of the CA that signed the Temporal frontend's certificate "
        "(empty: the system's trust store)",
    )
    temporal_tls_server_name: str = Field(
        "",
        description="name the Temporal frontend's certificate must carry, when it is not the "
        "host of CLOSEFLOW_TEMPORAL_ADDRESS (e.g. a SAN reached through a Service address)",
    )
    temporal_ui_port: int = Field(8233, description="dev server web UI port")
    temporal_cache_size: int = Field(
        10_000,
        ge=100,
        le=128_000,
        description="workflows the Temporal dev server's history service keeps in memory (its "
        "cache of mutable states, ~26 KB a journey; Temporal's default of 128,000 would be "
        "~3 GB), entries idle for an hour dropped every minute. Bounds the dev server's memory "
        "as journeys accumulate; a journey out of it is read from the database when it wakes. "
        "The production cluster's bound is in deploy/temporal/dynamicconfig.yaml",
    )
    task_queue_prefix: str = Field(
        "", description="prefix of every task queue name (isolates stacks sharing a namespace)"
    )

    # --- journeys ---------------------------------------------------------------------------
    reenroll_min_gap_days: int = Field(
        30,
        ge=0,
        le=3660,
        description="days after a prospect's journey ended before they may be enrolled again "
        "(a cadence's reenroll_min_gap_days overrides it; follow-up cadences and late replies "
        "are not held by it)",
    )

    # --- email --------------------------------------------------------------------------------
    smtp_host: str = Field("localhost", description="SMTP server host")
    smtp_port: int = Field(1025, description="SMTP server port")
    smtp_username: str = Field("", description="SMTP user (empty: no AUTH)")
    smtp_password: SecretStr = Field(SecretStr(""), description="SMTP password")
    smtp_tls: Literal["none", "starttls", "tls"] = Field("none", description="SMTP TLS mode")
    smtp_helo_name: str = Field(
        "",
        max_length=253,
        pattern=r"^[A-Za-z0-9.\-\[\]:]*$",
        description="the name this host gives in EHLO (receivers check it against its address "
        "and SPF); empty: the machine's fully qualified name, looked up once per process",
    )
    smtp_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=300,
        description="longest wait for each of the SMTP server's replies; one "
        "email's whole exchange is cut off after this plus CLOSEFLOW_SMTP_DATA_TIMEOUT_SECONDS "
        "(the send lease counts on that)",
    )
    smtp_data_timeout_seconds: float = Field(
        120.0,
        gt=0,
        le=600,
        description="longest wait for the SMTP server's reply to the end of a message: a "
        "server that stores it just as closeflow stops waiting gets it twice, so this wait is "
        "long (RFC 5321 asks 10 minutes; a waiting send holds one of the worker's activity slots)",
    )
    email_from: str = Field("closeflow <sales@closeflow.localhost>", description="From address")
    postal_address: str = Field(
        "",
        description="postal address printed in every email's footer; required in production",
    )
    per_domain_hourly_cap: int = Field(
        0, ge=0, description="most emails per recipient domain per rolling hour (0: no cap)"
    )
    # message templates (issue 10): what one rendered field may come to, checked at save and send
    template_max_email_chars: int = Field(
        100_000, ge=1_000, description="most characters of a rendered email body or HTML part"
    )
    template_max_sms_chars: int = Field(
        1_600, ge=160, le=1_600, description="most characters of a rendered SMS (Twilio's limit)"
    )
    reply_domain: str = Field(
        "",
        description="domain of the per-message Reply-To addresses (local+r-<token>@domain); "
        "empty: the sender address's domain. Its mail must reach the inbound webhook",
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="hosts the reps' notification webhooks may post to, comma-separated (a host "
        "also allows its subdomains, e.g. hooks.slack.com); empty: any public host. Either way, "
        "in production https only and never an internal name or address, checked again for "
        "every address the host resolves to at each delivery (docs/guides/rep-inbox.md)",
    )
    webhook_internal_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="internal hosts the reps' webhooks and the event subscriptions may post to "
        "in production, comma-separated: exact names (e.g. a service of the cluster, "
        "crm-bridge.tools.svc.cluster.local) or IP addresses, reached at whatever address they "
        "resolve to, over http too; the operator's explicit exception to the internal-address "
        "rules (the cloud metadata service is never reachable). Empty: none",
    )
    ooo_default_pause_days: int = Field(
        7,
        ge=1,
        le=365,
        description="how long an out-of-office reply without a return date pauses the journey",
    )
    # --- issue 14: replies from an ordinary mailbox (IMAP) -------------------------------------
    imap_host: str = Field(
        "",
        description="IMAP server of the reply mailbox outreach watches for replies, as the "
        "inbound webhooks receive them (docs/guides/imap-mailbox.md); empty: none watched",
    )
    imap_port: int = Field(
        0, ge=0, le=65_535, description="IMAP port (0: 993 with CLOSEFLOW_IMAP_TLS=tls, else 143)"
    )
    imap_tls: Literal["none", "starttls", "tls"] = Field(
        "tls",
        description="IMAP TLS mode: tls (implicit, port 993) or starttls; none only outside "
        "production (or with CLOSEFLOW_ALLOW_INSECURE_PROVIDERS=true)",
    )
    imap_tls_ca: str = Field(
        "",
        description="PEM file of the CA that signed the IMAP server's certificate (empty: the "
        "system's trust store)",
    )
    imap_username: str = Field("", description="IMAP user of the reply mailbox")
    imap_password: SecretStr = Field(SecretStr(""), description="IMAP password (never logged)")
    imap_mailbox: str = Field("INBOX", description="IMAP folder the replies arrive in")
    imap_poll_seconds: float = Field(
        60.0,
        gt=0,
        le=3_600,
        description="how often the mailbox is checked without IDLE (a server without it, or an "
        "IDLE connection that went quiet); also the longest IDLE wait before checking anyway",
    )
    imap_idle: bool = Field(
        True, description="wait for new mail with IDLE when the server offers it (else poll)"
    )
    imap_sent_folder: str = Field(
        "",
        description="IMAP folder of the same account where the SMTP server files a copy of "
        "every email sent through it (Gmail: [Gmail]/Sent Mail); set, an email whose send "
        "outcome is unknown is looked for there by its Message-ID before it is sent again. "
        "Empty: not looked for",
    )
    # --- end of issue 14 IMAP block ------------------------------------------------------------
    mailgun_signing_key: SecretStr = Field(
        SecretStr("dev-mailgun-signing-key"),
        description="Mailgun webhook signing key (empty disables the Mailgun webhooks)",
    )
    sendgrid_webhook_public_key: str = Field(
        "",
        description="SendGrid Event Webhook verification key, base64 DER as SendGrid shows it, "
        "or PEM (empty disables the SendGrid webhook)",
    )
    # --- issue 11 hardening (helper "hardening") ---------------------------------------------
    mailgun_max_age_seconds: int = Field(
        8 * 3600,
        ge=60,
        # under the day a used token is kept (services/outreach/inbox.py, TOKEN_RETENTION): a
        # token must be remembered as long as its signature is accepted
        le=12 * 3600,
        description="a Mailgun webhook whose signed timestamp is older than this is refused "
        "(403) before anything is stored. Mailgun retries a webhook it could not deliver for 8 "
        "hours and does not say it signs a retry again: a shorter window loses those retries. "
        "Each token is single-use, so the same signature with another body is refused at any age",
    )
    sendgrid_max_age_seconds: int = Field(
        900,
        ge=60,
        le=86_400,
        description="a SendGrid Event Webhook batch whose signed timestamp is older than this is "
        "refused (403) before anything is stored: a captured batch cannot be replayed later",
    )
    sendgrid_max_ahead_seconds: int = Field(
        300,
        ge=0,
        le=3_600,
        description="how far in the future a SendGrid batch's signed timestamp may be (clock skew)",
    )
    service_token: SecretStr = Field(
        SecretStr("dev-service-token"),
        description="the credential the services present to each other (in X-API-Key) and the "
        "only one /internal/* routes accept; no person holds it, and it is not one of "
        "CLOSEFLOW_API_KEYS. Required in production (32+ random characters)",
    )
    # --- end of issue 11 hardening block --------------------------------------------------------
    postmark_webhook_user: str = Field(
        "", description="user name in the Postmark webhook URLs' basic auth"
    )
    postmark_webhook_password: SecretStr = Field(
        SecretStr(""),
        description="password in the Postmark webhook URLs' basic auth (empty disables the "
        "Postmark webhooks; set, emails carry the X-PM-Metadata- header that names them in "
        "Postmark's events)",
    )

    idempotency_ttl_seconds: int = Field(
        86_400,
        ge=60,
        le=30 * 86_400,
        description="how long a creating request's Idempotency-Key is remembered (its answer "
        "replayed to a retry with the same key and body); older records are deleted as new keys "
        'arrive (docs/reference/api.md, "Idempotency-Key")',
    )

    # --- issue 14 integrations (helper "integ"): event subscriptions, exports ----------------
    event_max_attempts: int = Field(
        24,
        ge=1,
        le=100,
        description="attempts of one event delivery to a subscription's URL before it is given "
        "up; a given-up delivery disables the subscription (status disabled, with the reason) "
        "until ops re-enable it (docs/guides/event-subscriptions.md)",
    )
    event_retry_base_seconds: float = Field(
        5.0,
        gt=0,
        le=3600,
        description="wait after an event delivery's first failed attempt; it doubles per "
        "attempt up to event_retry_max_seconds (24 attempts at the defaults: a delivery is given up "
        "11.5 to 14.5 hours after its first failure)",
    )
    event_retry_max_seconds: float = Field(
        3600.0, gt=0, le=86_400, description="longest wait between two attempts of a delivery"
    )
    event_timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="longest wait for a subscriber's answer to one delivery"
    )
    event_retention_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="delivered and failed event deliveries, and the events no pending delivery "
        "needs, are deleted this many days after they were queued (hourly, in batches); pending "
        "deliveries are kept whatever their age",
    )
    webhook_event_retention_days: int = Field(
        30,
        # SendGrid retries an event for up to 72 hours: an event pruned sooner could be
        # applied twice
        ge=3,
        le=3650,
        description="provider events that only report on a send (delivered, opened, a text's "
        "status callbacks) and those nobody could be matched to are deleted this many days after "
        "they arrived (hourly, in batches); what the prospect's timeline shows (a STOP, an "
        "unsubscribe, a complaint) and every event that told a journey something are kept",
    )
    rejected_item_retention_days: int = Field(
        30,
        ge=1,
        le=3650,
        description="provider items that could not be understood (rejected_items, kept for an "
        "operator to look at) are deleted this many days after they arrived (hourly, in batches)",
    )
    event_secret_overlap_seconds: int = Field(
        86_400,
        ge=0,
        le=30 * 86_400,
        description="after a subscription's secret is rotated, deliveries carry a signature "
        "with the old secret too for this long, so a receiver can switch without losing any",
    )
    export_page_size: int = Field(
        500,
        ge=1,
        le=10_000,
        description="rows a CSV export reads from the database at a time (its memory bound)",
    )
    # --- end of issue 14 integrations block -----------------------------------------------------

    # --- Twilio -------------------------------------------------------------------------------
    twilio_account_sid: str = Field(
        "AC00000000000000000000000000000000", description="Twilio account SID"
    )
    twilio_auth_token: SecretStr = Field(
        SecretStr("dev-twilio-auth-token"),
        description="Twilio auth token; signs callbacks (empty disables the Twilio webhooks; "
        "required in production, where SMS are sent with it)",
    )
    twilio_from_number: str = Field("+15005550006", description="sending number, E.164")
    twilio_api_base_url: str = Field(
        "http://127.0.0.1:8030", description="https://api.twilio.com in production"
    )
    twilio_timeout_seconds: float = Field(
        15.0,
        gt=0,
        le=300,
        description="longest wait for Twilio's API during one request; one text's whole "
        "delivery (a re-send looks for the earlier attempt's text first) gets three times it, "
        "which the send lease counts",
    )

    # --- worker slots (issue 13, speed of the journey path) -----------------------------------
    workflow_task_slots: int = Field(
        24,
        ge=2,
        le=1000,
        description="workflow tasks a journeys worker runs at once (and polls for: half on the "
        "shared queue, where new journeys' first tasks wait); a task is ~8 ms of CPU and "
        "mostly waits on the server, but they share one core (the GIL): with the SDK's 100, "
        "200 journeys starting together timed out their workflow tasks (10 s, when a task "
        "cost 34 ms); the rest wait in Temporal's queue",
    )

    # --- observability (issue 12) -------------------------------------------------------------
    worker_grace_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="on SIGTERM a worker stops polling and waits this long for its in-flight "
        "activities to finish before cancelling them (keep it under the orchestrator's grace "
        "period: the k8s manifests give 60 s)",
    )
    # --- issue 13 storms (helper "storms") ---------------------------------------------------
    journey_cache_size: int = Field(
        1000,
        ge=0,
        le=100_000,
        description="journeys the journeys worker keeps in memory between their tasks (the "
        "sticky cache); a journey evicted from it is replayed from its history when it next "
        "wakes. Bounds the worker's memory whatever the number of journeys in flight; each "
        "cached journey holds about 100 KB plus five times its cadence's templates, unless it "
        "carries where they are (CLOSEFLOW_JOURNEY_TEMPLATES, docs/operations.md)",
    )
    journey_templates: Literal["auto", "inline", "stored"] = Field(
        "auto",
        description="what a journey started from now on carries of its cadence's templates: "
        "inline, a copy of them; stored, where they are (the cadence version, which never "
        "changes), and outreach renders from there: smaller histories, and a worker's memory no "
        "longer grows with the templates, but an outreach worker of an earlier release would "
        "send their steps as empty messages; auto, stored while every worker Temporal saw "
        "polling the journeys and outreach queues in the last 5 minutes is of a release that "
        "knows stored steps (asked at most once a minute), else inline (during a rolling "
        "upgrade, or with no worker polling). With stored or auto, do not roll back past this "
        "release while such journeys run (docs/operations.md)",
    )
    # --- end of issue 13 storms block ---------------------------------------------------------
    worker_health_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="port of a worker's GET /healthz (alive) and GET /readyz (connected to "
        "Temporal, pollers running), on CLOSEFLOW_HOST; 0: not served (the dev stack)",
    )
    worker_metrics_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="port where a worker serves the Temporal SDK's Prometheus metrics "
        "(/metrics), on CLOSEFLOW_HOST; 0: not served",
    )
    otlp_endpoint: str = Field(
        "",
        description="OTLP/HTTP endpoint traces are exported to (e.g. http://otel-collector:4318); "
        "empty: no tracing at all",
    )
    log_format: Literal["auto", "text", "json"] = Field(
        "auto",
        description="json: one JSON object per line, with the trace and request ids; text: one "
        "readable line per event; auto: json in production, text otherwise",
    )

    # --- dev stack sandboxes --------------------------------------------------------------------
    mailbox_http_port: int = Field(8025, description="local mailbox web page and JSON")
    twilio_sandbox_port: int = Field(8030, description="local Twilio-compatible server")

    @model_validator(mode="before")
    @classmethod
    def _parse_keys(cls, data: object) -> object:
        if isinstance(data, dict):
            for name in (
                "api_keys",
                "webhook_allowed_hosts",
                "webhook_internal_hosts",
                "trusted_proxies",
                "payload_master_keys",
                "codec_cors_origins",
            ):
                if name in data:
                    data[name] = _split_csv(data[name])
        return data

    @model_validator(mode="after")
    def _check_key_entries(self) -> Settings:
        _ = self.api_principals  # a malformed entry stops the process at start, not at a request
        _ = self.trusted_networks  # so does a malformed proxy network
        if self.service_token.get_secret_value() in self.api_principals:
            # a person's key would then reach /internal/*
            raise ValueError("CLOSEFLOW_SERVICE_TOKEN must not be one of CLOSEFLOW_API_KEYS")
        _ = self.master_keys  # and a malformed payload master key
        return self

    @model_validator(mode="after")
    def _check_sent_folder(self) -> Settings:
        if self.imap_sent_folder.strip() and not self.imap_host:
            raise ValueError(
                "CLOSEFLOW_IMAP_SENT_FOLDER is a folder of the IMAP account: set "
                "CLOSEFLOW_IMAP_HOST, CLOSEFLOW_IMAP_USERNAME and CLOSEFLOW_IMAP_PASSWORD too"
            )
        return self

    @model_validator(mode="after")
    def _check_temporal_client_certificate(self) -> Settings:
        # a certificate without its key (or the reverse) would fail at the first connection,
        # after the process has started and reported ready
        if bool(self.temporal_tls_cert.strip()) != bool(self.temporal_tls_key.strip()):
            raise ValueError(
                "CLOSEFLOW_TEMPORAL_TLS_CERT and CLOSEFLOW_TEMPORAL_TLS_KEY are set together"
            )
        return self

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.environment != "production":
            return self
        _check_api_keys([k.get_secret_value() for k in self.api_keys])
        for name in REQUIRED_SECRETS:
            _check_secret(name, getattr(self, name).get_secret_value(), required=True)
        check_master_keys_for_production([k.get_secret_value() for k in self.payload_master_keys])
        for name in OPTIONAL_SECRETS:
            _check_secret(name, getattr(self, name).get_secret_value(), required=False)
        for name in FOREIGN_SECRETS:
            if _is_placeholder(getattr(self, name).get_secret_value()):
                raise ValueError(
                    f"{_var(name)} is a placeholder: set the real value or leave it empty"
                )
        for name, used_for in PUBLIC_URLS.items():
            _check_public_url(name, getattr(self, name), used_for)
        if not self.postal_address.strip():
            # anti-spam laws (CAN-SPAM, PECR) want the sender's postal address in every email
            raise ValueError("CLOSEFLOW_POSTAL_ADDRESS must be set in production")
        if not self.allow_insecure_providers:
            # the Twilio auth token and SMTP password would cross the network in clear text
            if not self.twilio_api_base_url.lower().startswith("https://"):
                raise ValueError(
                    "CLOSEFLOW_TWILIO_API_BASE_URL must be https:// in production "
                    "(or set CLOSEFLOW_ALLOW_INSECURE_PROVIDERS=true)"
                )
            if self.smtp_tls == "none":
                raise ValueError(
                    "CLOSEFLOW_SMTP_TLS must be starttls or tls in production "
                    "(or set CLOSEFLOW_ALLOW_INSECURE_PROVIDERS=true)"
                )
            if self.imap_host and self.imap_tls == "none":
                # the mailbox password and every reply would cross the network in clear text
                raise ValueError(
                    "CLOSEFLOW_IMAP_TLS must be starttls or tls in production "
                    "(or set CLOSEFLOW_ALLOW_INSECURE_PROVIDERS=true)"
                )
        return self

    @property
    def json_logs(self) -> bool:
        return self.log_format == "json" or (
            self.log_format == "auto" and self.environment == "production"
        )

    def database_url(self, service: str) -> str:
        url: str = getattr(self, f"{service}_database_url")
        if url:
            return url
        if self.environment == "production":
            # the fallback would be a file in the container: lost with it, one per replica (and
            # the payload keys every process keeps in prospecting's). Checked where a database is
            # opened, not at start: a process needs only the databases it uses
            raise MissingSetting(f"{_var(service)}_DATABASE_URL must be set in production")
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    def port(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))

    def task_queue(self, name: str) -> str:
        return f"{self.task_queue_prefix}{name}"

    @cached_property
    def api_principals(self) -> dict[str, Principal]:
        """Each accepted key -> who holds it (role, rep)."""
        return parse_api_keys(k.get_secret_value() for k in self.api_keys)

    @cached_property
    def trusted_networks(self) -> tuple[Network, ...]:
        return parse_networks(self.trusted_proxies)

    @cached_property
    def master_keys(self) -> list[MasterKey]:
        return parse_master_keys([k.get_secret_value() for k in self.payload_master_keys])

    @cached_property
    def api_key_values(self) -> frozenset[str]:
        return frozenset(self.api_principals)

    @cached_property
    def internal_api_key(self) -> str:
        """The key a closeflow process presents to another one: the service token."""
        return self.service_token.get_secret_value()

    @cached_property
    def operator_key(self) -> str:
        """The key the import CLI presents (a person's tool): the first admin key, else the
        first ops key. Never a rep key: an import writes every rep's prospects."""
        for role in ("admin", "ops"):
            for key, holder in self.api_principals.items():
                if holder.role == role:
                    return key
        return ""
