"""The deals service: a deal from qualifying to closed.

core/           the deal record: read, list, open, edit; its history, timeline, erasure, deals
                per source; the Deal read models. Every sub-domain builds on it.
qualification/  answers scored by a framework (scoring.py), the framework registry, the gate
                out of qualifying, the verdict signal.
meetings/       booking and the meeting's life; the rep's brief and the open objections at the
                decision deadline.
playbook/       objection matching, the playbook, responses ranked by what worked, analytics.
closing/        stage moves, close won/lost with reasons, reopen, the pipeline.

Each sub-package: api.py (thin routes: use case, commit, then signal), service.py (use cases
that take a session and never commit), schemas.py. models.py, activities.py (the journey's
calls), access.py (route ownership) and migrations/ are the service's, shared by all.
"""
