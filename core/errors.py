"""The one base class for everything a user caused and can fix (a bad dataset, model, photo,
setting or URL). Pages, the CLI and job messages show these as messages; any other exception
is a programming error and is reported as one, never dressed up as the user's fault."""


class UserError(ValueError):
    """Something the user asked for cannot be done; the message says why, for them."""
