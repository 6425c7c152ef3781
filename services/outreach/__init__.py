"""The outreach service: a prospect's cadence, the sends, what comes back, and the rep's tasks.

cadences/       cadences (versioned) and their templates and send windows; enrollment (by hand,
                by fit tier, the rep's reassignment); simulation and previews, step stats,
                control of journeys in flight; a prospect's outreach timeline.
consent/        a person's consent across channels, per-address suppressions, the global
                do-not-contact list, and erasure (with the suppression that outlives it).
tasks/          rep tasks and the ranked inbox (API and server-rendered page), the reps and
                prospect cards read from prospecting, colleagues paused by a reply.
senders/        sender mailboxes, the caps (send_policy.py) and the email slot each send takes.
webhooks/       provider callbacks (Postmark, SendGrid, Mailgun, Twilio), one-click unsubscribe,
                reply classification and out-of-office return dates.
notifications/  urgent and overdue tasks told to reps (email, SMS, signed webhooks), and where
                such a webhook may point.

Sub-packages with routes: api.py (thin routes: use case, commit, then signal), service.py (use
cases that take a session and never commit), schemas.py. models.py, activities.py (the
journey's calls), access.py (route ownership), prospects.py (the prospecting client),
inbox.py (provider events and journey signals stored, then relayed: used by consent, tasks and
webhooks alike) and migrations/ are the service's, shared by all.
"""
