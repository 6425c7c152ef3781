"""Validated contact fields (email, phone, time zone) shared by every person-shaped schema.

Pure functions, pydantic annotated types and PersonFields, no I/O: referrals validates the
people it is told about exactly the way prospecting validates the prospects they become.
"""

from __future__ import annotations

from typing import Annotated, Any

import idna
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from shared.json_schema import NOT_BLANK, Documented
from shared.timezones import known_zone


def ascii_domain(domain: str) -> str | None:
    """An internationalized domain's ASCII form (`xn--...`, IDNA 2008 with UTS 46, as
    email_validator reads domains); None when it has none."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


def normalize_email(value: str) -> str:
    """Lower-cased, checked address; raises ValueError with a readable reason."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as err:
        raise ValueError(str(err)) from err
    return result.normalized.lower()


# Mail providers where an address says nothing of the person's employer: two prospects at
# gmail.com are not colleagues (colleague detection, issue 10). Lower-case domains.
FREE_MAIL_DOMAINS: frozenset[str] = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "hotmail.co.uk",
        "live.com",
        "msn.com",
        "yahoo.com",
        "yahoo.co.uk",
        "yahoo.fr",
        "ymail.com",
        "aol.com",
        "icloud.com",
        "me.com",
        "mac.com",
        "proton.me",
        "protonmail.com",
        "gmx.com",
        "gmx.de",
        "gmx.net",
        "web.de",
        "mail.com",
        "yandex.com",
        "yandex.ru",
        "zoho.com",
        "fastmail.com",
        "qq.com",
        "163.com",
    }
)


def work_domain(email: str | None) -> str | None:
    """The employer's domain an address shows (lower-case), or None: no address, or a free-mail
    provider's."""
    if not email or "@" not in email:
        return None
    domain = email.rsplit("@", 1)[1].strip().lower().rstrip(".")
    return None if not domain or domain in FREE_MAIL_DOMAINS else domain


def normalize_phone(value: str) -> str:
    """E.164 (+14155550100) from any common spelling that includes the country code."""
    try:
        number = phonenumbers.parse(value.strip(), None)
    except phonenumbers.NumberParseException as err:
        raise ValueError(
            "not a phone number; include the country code, e.g. +1 415 555 0100"
        ) from err
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number; include the country code, e.g. +1 415 555 0100")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def check_timezone(value: str) -> str:
    """An IANA zone of a place, or "" for unknown (outreach then infers it from the phone
    number): exactly the names the zone resolver uses (shared.timezones.known_zone), so no
    accepted zone is silently ignored later."""
    name = value.strip()
    if not name or known_zone(name) is not None:
        return name
    hint = name.removeprefix("posix/").removeprefix("right/")
    example = hint if hint != name and known_zone(hint) is not None else "Europe/Berlin"
    raise ValueError(f"unknown time zone {name!r}; use an IANA name such as {example}")


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _wrap(fn: Any, kind: str) -> Any:
    # PydanticCustomError keeps the message free of pydantic's "Value error, " prefix.
    def validator(value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(fn(value))
        except ValueError as err:
            raise PydanticCustomError(kind, str(err)) from err

    return validator


def _required_text(value: str) -> str:
    value = value.strip()
    if not value:
        raise PydanticCustomError("required", "must not be empty")
    return value


# bounded before they are parsed (RFC 5321 caps an address at 254; a phone is never 64 long).
# The OpenAPI states what the parsers accept: an address (email_validator refuses one above 254;
# "idn-email": an internationalized domain is accepted and kept as people write it, so an
# address sent as `info@xn--bckerei-5wa.de` comes back as `info@bäckerei.de`),
# a phone number with its country code ("phone": not a JSON Schema format of its own, so the
# description and the example say it), an IANA zone name.
EmailText = Annotated[
    str,
    StringConstraints(max_length=320),
    Documented(
        {
            "format": "idn-email",
            "maxLength": 254,
            "description": "an email address (an internationalized one too, kept in its "
            "Unicode form), not at a special-use domain (.test, .local, .localhost, .invalid, "
            ".onion, .arpa)",
            "examples": ["ada@example.com"],
        }
    ),
]
PhoneText = Annotated[
    str,
    StringConstraints(max_length=64),
    Documented(
        {
            "format": "phone",
            "description": "a phone number with its country code (any common spelling); "
            "stored as E.164",
            "examples": ["+14155550100"],
        }
    ),
]
Email = Annotated[
    EmailText | None,
    BeforeValidator(_blank_to_none),
    AfterValidator(_wrap(normalize_email, "email")),
]
Phone = Annotated[
    PhoneText | None,
    BeforeValidator(_blank_to_none),
    AfterValidator(_wrap(normalize_phone, "phone")),
]
TimeZone = Annotated[
    str,
    AfterValidator(_wrap(check_timezone, "timezone")),
    Documented({"format": "timezone", "examples": ["Europe/Berlin"]}),
]
RequiredEmail = Annotated[EmailText, AfterValidator(_wrap(normalize_email, "email"))]
RequiredText = Annotated[str, AfterValidator(_required_text), Documented({"pattern": NOT_BLANK})]
Text = Annotated[str, AfterValidator(str.strip)]


def require_email_or_phone(phone: str | None, info: ValidationInfo) -> str | None:
    """Field validator for `phone` (declared after `email`, with validate_default=True)."""
    if "email" not in info.data:
        return phone  # email itself was invalid: that error already names the field
    if phone is None and info.data["email"] is None:
        raise PydanticCustomError("email_or_phone", "give an email or a phone (or both)")
    return phone


class PersonFields(BaseModel):
    """A person as both a referral and a prospect name them (prospecting adds its own fields)."""

    first_name: RequiredText = Field(max_length=200)
    last_name: Text = Field("", max_length=200)
    email: Email = None
    # validate_default: the "email or phone" rule must run when phone is left out
    phone: Phone = Field(None, validate_default=True)
    company: Text = Field("", max_length=200)
    title: Text = Field("", max_length=200)
    timezone: TimeZone = Field(
        "", max_length=64, description="IANA zone; empty: inferred from the phone"
    )

    _email_or_phone = field_validator("phone")(require_email_or_phone)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        # the "email or phone" rule, in the schema: one of the two given, not null
        schema = super().__get_pydantic_json_schema__(core_schema, handler)
        handler.resolve_ref_schema(schema)["anyOf"] = [
            {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
            for name in ("email", "phone")
        ]
        return schema


class PersonOut(BaseModel):
    """A person as a service answers with them, read from its rows (the fields PersonFields
    takes in); each service's schema adds its own."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    company: str
    title: str
    timezone: str
