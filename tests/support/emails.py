"""A minimal outgoing email, for the tests that talk SMTP to a server of their own."""

from shared.providers.email import OutgoingEmail, new_message_id


def plain_email(to: str = "x@example.com", subject: str = "Quick question") -> OutgoingEmail:
    return OutgoingEmail(
        to=to,
        subject=subject,
        text="Hello",
        html="<p>Hello</p>",
        message_id=new_message_id("closeflow.test"),
        unsubscribe_url="https://u.test/u",
    )
