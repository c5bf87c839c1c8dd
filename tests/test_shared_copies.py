"""What the repository keeps of `../shared` (the normative rules, the real FHIR files) so that
a clone stands alone, kept equal to it where it is beside the checkout."""

from __future__ import annotations

import pytest

from tests.conftest import FHIR_DATA, REPO

SHARED = REPO.parent / "shared"


@pytest.mark.skipif(not (SHARED / "DOMAIN.md").is_file(), reason="no ../shared beside it")
def test_docs_domain_md_is_the_shared_rules_unchanged():
    assert (REPO / "docs" / "DOMAIN.md").read_bytes() == (SHARED / "DOMAIN.md").read_bytes()


@pytest.mark.skipif(not (SHARED / "data" / "fhir").is_dir(), reason="no ../shared beside it")
def test_the_fhir_test_files_are_the_shared_ones_unchanged():
    shared = SHARED / "data" / "fhir"
    ours = {p.relative_to(FHIR_DATA): p.read_bytes() for p in FHIR_DATA.rglob("*")
            if p.is_file()}
    theirs = {p.relative_to(shared): p.read_bytes() for p in shared.rglob("*") if p.is_file()}
    assert ours == theirs, sorted(set(ours) ^ set(theirs)) or "a file's bytes differ"


def test_the_readme_links_the_rules_in_the_repository():
    assert (REPO / "docs" / "DOMAIN.md").is_file()
    assert "(docs/DOMAIN.md)" in (REPO / "README.md").read_text()
