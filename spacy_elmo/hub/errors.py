"""What can go wrong when a model is named, fetched or cached. All are ValueErrors, like the other
bad-model errors (WeightFileError, OptionsError), so every caller that reports those reports these."""


class HubError(ValueError):
    """A named model cannot be used."""


class CatalogError(HubError):
    """The catalog file (shipped or in SPACY_ELMO_CATALOG) is unreadable or malformed."""


class UnknownModelError(HubError):
    """The name is not in the catalog; the message lists the names that are."""


class ModelNotDownloadedError(HubError):
    """The model is not in the cache and downloading was not allowed."""


class DownloadError(HubError):
    """The server could not be reached or answered with an error."""


class VerificationError(DownloadError):
    """A downloaded file has the wrong size or checksum, or is not what it should be (an HTML page)."""


class CacheError(HubError):
    """The cache folder cannot be written: read-only, or the disk is full."""
