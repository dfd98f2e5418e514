"""SMART App Launch (EHR launch) of the review page from a CDS Hooks card (issue 15 item 6)."""
