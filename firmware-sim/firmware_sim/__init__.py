"""Tag firmware simulator: infant bracelet, mother tag, staff badge, advertisement encoding."""
