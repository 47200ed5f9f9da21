"""A delivery's sync: snapshot (pure), guard (pure), the sync itself, task retry policy."""
