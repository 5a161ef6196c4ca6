"""Videos and labels: decoding and sampling (video), the views the backbone sees (views), datasets
and their formats (samples, datasets), segment annotations (segments), per-person rows of videos of
several people (tracks), grammars of what follows what (grammar), synthetic videos (synthetic; people:
several at once), composed sequences (compose) and the video writer (writer).
Nothing here imports models, training or inference."""
# `pipeline.data` was the datasets module before the package was split: its names stay importable here.
from pipeline.data.datasets import (  # noqa: F401
    DEFAULT_EXTENSIONS,
    DataError,
    Dataset,
    Sample,
    check_labels,
    csv_splits,
    find_split_files,
    group_of,
    has_own_val,
    hold_out,
    is_video,
    load_class_folders,
    load_csv,
    load_dataset,
    load_ucf_split,
    stratified_split,
    write_split,
)
