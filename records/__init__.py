"""FHIR R4 health records (DOMAIN.md §6); see issue #6."""
