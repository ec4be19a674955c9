"""The project's exception hierarchy: everything rtls raises on purpose derives from RtlsError."""


class RtlsError(Exception):
    """Root of every error raised by rtls, gateways and firmware_sim."""


class ConfigError(RtlsError):
    """A configuration file (site, scenario) is invalid; the message names the entry."""


class SiteError(ConfigError):
    """The site file is invalid."""


class ScenarioError(ConfigError):
    """The scenario file is invalid."""


class PayloadError(RtlsError):
    """A payload (advertisement, gateway message) cannot be encoded or decoded.

    ``reason`` is a short machine-readable tag used to count errors by kind.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class TransportError(RtlsError):
    """The MQTT broker or another transport failed (wraps the third-party error)."""
