"""The failure types an activity reports to the journey: one vocabulary for every service.

The activity boundary (`shared.activity_boundary`) turns a service's `AppError` into a Temporal
`ApplicationError` whose `type` is one of these names; the journey's retry policy lists
`NON_RETRYABLE` so that what cannot succeed on a later attempt fails at once instead of being
retried forever. Stdlib only: workflow code imports this inside the sandbox.
"""

NOT_FOUND = "NotFound"  # the thing named does not exist (404): retrying cannot make it appear
INVALID_INPUT = "InvalidInput"  # the request can never be valid as sent (400, 422)
CONFLICT = "Conflict"  # the state forbids it (409): e.g. a closed deal asked to change
# a message template that cannot render for this prospect (issue 10): the journey marks the
# step failed, gives the rep a task to fix it and goes on
TEMPLATE_ERROR = "TemplateError"
TEMPLATE_ERROR_CODE = "template_error"  # the AppError code that becomes TEMPLATE_ERROR

NON_RETRYABLE: tuple[str, ...] = (NOT_FOUND, INVALID_INPUT, CONFLICT, TEMPLATE_ERROR)


def error_type_for_status(status: int) -> str | None:
    """The non-retryable type for an HTTP-like status, or None when a retry may succeed."""
    if status == 404:
        return NOT_FOUND
    if status == 409:
        return CONFLICT
    if 400 <= status < 500 and status not in (408, 429):
        return INVALID_INPUT
    return None


def error_type_for(status: int, code: str) -> str | None:
    """As error_type_for_status, with the codes that have a type of their own."""
    if code == TEMPLATE_ERROR_CODE:
        return TEMPLATE_ERROR
    return error_type_for_status(status)
