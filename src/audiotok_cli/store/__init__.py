"""The store: the Zarr layout (a `Store` holding its clip table and its integrity checks) and the
typed records of every group. Nothing outside this package reads or writes Zarr paths or attributes."""

from audiotok_cli.lock import ReaderLease, WriterLock
from audiotok_cli.store.clips import CLIP_TABLE_REPAIR, SPLITS, split_code
from audiotok_cli.store.layout import (
    PENDING,
    Damaged,
    FeatureSet,
    NewStore,
    PaddedSet,
    Pick,
    Store,
    TokenSet,
    Vocab,
    fingerprint,
    only_candidate,
    require_same,
)
from audiotok_cli.store.records import (
    CollectionRecord,
    EncoderRecord,
    FeaturesRecord,
    FileStamp,
    SplitRecord,
    TokensRecord,
    VerifyRecord,
    VocabRecord,
)
from audiotok_cli.store.repairs import remake, repair_shard

__all__ = [
    "CLIP_TABLE_REPAIR",
    "PENDING",
    "SPLITS",
    "CollectionRecord",
    "Damaged",
    "EncoderRecord",
    "FeatureSet",
    "FeaturesRecord",
    "FileStamp",
    "NewStore",
    "PaddedSet",
    "Pick",
    "ReaderLease",
    "SplitRecord",
    "Store",
    "TokenSet",
    "TokensRecord",
    "VerifyRecord",
    "Vocab",
    "VocabRecord",
    "WriterLock",
    "fingerprint",
    "only_candidate",
    "remake",
    "repair_shard",
    "require_same",
    "split_code",
]
