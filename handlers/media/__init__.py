"""Media uploads: an R2 object created or deleted becomes (or stops being) a `media_objects` row."""

from handlers.media.handler import record_media_uploaded, remove_deleted_media

__all__ = ["record_media_uploaded", "remove_deleted_media"]
