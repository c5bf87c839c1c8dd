"""FHIR R4 health records (DOMAIN.md §6); see issue #6."""

from records import fhir_speedups

# before any module of the package builds a FHIR model class (they are built on first use)
fhir_speedups.install()
