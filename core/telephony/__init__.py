"""core/telephony package."""
