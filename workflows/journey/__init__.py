"""The prospect's journey as a package; story.py is where to start reading."""

from workflows.journey.story import ProspectJourney

__all__ = ["ProspectJourney"]
