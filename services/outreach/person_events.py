"""The inbox events that say what a person did, or had done, about being contacted (the timeline
shows them, the retention keeps them), and the provider name of a rep task's outcome."""

from __future__ import annotations

# What a person did or had done about their contact (the inbox kinds, which name the channel),
# with the words the timeline shows. Replies are their message's `reply` in the timeline (the step
# they answer); delivery reports are its status; a task's outcome is the task's.
SAID = {
    "sms_stop": "STOP by text: no more texts",
    "sms_start": "START by text: texts again",
    "sms_help": "HELP by text",
    "email_stop": "asked by email to stop",
    "email_auto_reply": "an automatic reply (out of office)",
    "email_unsubscribe_link": "unsubscribed through the email's link",
    "do_not_contact": "covered by a do-not-contact entry",
    "cadence_pause": "journey paused with its cadence",
    "cadence_resume": "journey resumed with its cadence",
    "cadence_stop": "journey stopped with its cadence",
    "rep_pause": "journey paused while the rep is away",
    "rep_resume": "journey resumed after the rep's pause",
}

# the inbox's provider for a rep task's outcome that tells the journey something (its event
# is the task's completion: services.outreach.tasks.service.complete)
TASK_PROVIDER = "rep_task"
