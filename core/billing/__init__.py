"""Billing: pricing calls (``costs``) and budget limits (``budgets``). See docs/campaigns.md."""
