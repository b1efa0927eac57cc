"""The satellite tile index: build (streaming, resumable), persist, search.

    from astroapp.index import build_index, TileIndex, Region
    build_index([source], model, "idx/")                 # embeds tiles at 0/90/180/270 deg
    index = TileIndex.open("idx/", model=model)          # refuses another model
    cands = index.search(descriptors, k=10, region=Region.around_nadir(lon, lat))
"""

from astroapp.index.build import BuildReport, build_index
from astroapp.index.embed import (
    Queries,
    describe_queries,
    embed_images,
    embed_rotations,
    preprocess_images,
)
from astroapp.index.errors import (
    IndexCorruptError,
    IndexMismatchError,
    IndexNotFoundError,
    TileIndexError,
)
from astroapp.index.manifest import ModelFingerprint, model_fingerprint
from astroapp.index.region import Region, haversine_km, visible_radius_km
from astroapp.index.tile_index import Candidate, TileIndex

__all__ = [
    "BuildReport",
    "Candidate",
    "IndexCorruptError",
    "IndexMismatchError",
    "IndexNotFoundError",
    "ModelFingerprint",
    "Region",
    "TileIndex",
    "TileIndexError",
    "build_index",
    "Queries",
    "describe_queries",
    "embed_images",
    "embed_rotations",
    "haversine_km",
    "model_fingerprint",
    "preprocess_images",
    "visible_radius_km",
]
