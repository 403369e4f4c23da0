"""Matter-code registry: catalogues, concept maps and translate(), pure and synchronous.

Catalogues list the matters (政务服务事项) or licence types of one region in
one code scheme, versioned and with validity periods. Concept maps, modelled
on FHIR ConceptMap R5, relate two catalogues. ``Registry.translate`` answers
like FHIR ``$translate``: direct maps first, else a chain through the national
basic code with relationships composed. Nothing here reads files, the network
or the clock: callers pass bytes and dates.

Errors (the first three are also ``ValueError``s, the last two ``LookupError``s)::

* RegistryError
  x CodeFormatError        a code does not have the shape its scheme requires
  x SchemeError            a scheme declaration is unusable (bad pattern)
  x LoadError              loaded data has problems; .report lists each with file and row
  x UnknownRegionError     no catalogue is held for the region
  x UnknownCodeError       the region's catalogue has no such code
  x CaseDataError          a case book (licence requirements of matters) is unusable
"""

from registry._bundle import load_bundle, load_bundle_with_report
from registry._cases import (
    Alternative,
    Bundle,
    CaseBook,
    CaseDataError,
    HolderRole,
    MatterRequirements,
    Requirement,
    holder_regions,
)
from registry._csv import CSV_COLUMNS, conceptmap_from_csv, conceptmap_to_csv
from registry._errors import (
    CodeFormatError,
    LoadError,
    RegistryError,
    SchemeError,
    UnknownCodeError,
    UnknownRegionError,
)
from registry._fhir import (
    EXT,
    R4_EQUIVALENCE,
    catalogue_from_fhir,
    catalogue_to_fhir,
    conceptmap_from_fhir,
    conceptmap_from_fhir_r4,
    conceptmap_to_fhir,
)
from registry._model import (
    NATIONAL,
    Catalogue,
    CatalogueKind,
    Concept,
    ConceptMap,
    DependsOn,
    LicenceTypeCode,
    MapElement,
    MapGroup,
    MapStatus,
    MapTarget,
    MatterCode,
    MatterType,
    Period,
    RegionCode,
    Relationship,
    Unmapped,
    UnmappedMode,
    compose,
)
from registry._registry import (
    HUZHOU,
    Coverage,
    CoverageLevel,
    Match,
    MatterDetails,
    Registry,
    Translation,
)
from registry._report import LoadProblem, LoadReport
from registry._schemes import BUILTIN_SCHEMES, CodeScheme, ParsedCode

__all__ = [
    "Alternative",
    "BUILTIN_SCHEMES",
    "Bundle",
    "CSV_COLUMNS",
    "CaseBook",
    "CaseDataError",
    "Catalogue",
    "CatalogueKind",
    "CodeFormatError",
    "CodeScheme",
    "Concept",
    "ConceptMap",
    "Coverage",
    "CoverageLevel",
    "DependsOn",
    "EXT",
    "HUZHOU",
    "HolderRole",
    "LicenceTypeCode",
    "LoadError",
    "LoadProblem",
    "LoadReport",
    "MapElement",
    "MapGroup",
    "MapStatus",
    "MapTarget",
    "Match",
    "MatterCode",
    "MatterDetails",
    "MatterRequirements",
    "MatterType",
    "NATIONAL",
    "ParsedCode",
    "Period",
    "R4_EQUIVALENCE",
    "RegionCode",
    "Registry",
    "RegistryError",
    "Relationship",
    "Requirement",
    "SchemeError",
    "Translation",
    "UnknownCodeError",
    "UnknownRegionError",
    "Unmapped",
    "UnmappedMode",
    "catalogue_from_fhir",
    "catalogue_to_fhir",
    "compose",
    "conceptmap_from_csv",
    "conceptmap_from_fhir",
    "conceptmap_from_fhir_r4",
    "conceptmap_to_csv",
    "conceptmap_to_fhir",
    "holder_regions",
    "load_bundle",
    "load_bundle_with_report",
]
