"""Videos and labels: decoding and sampling (video), the views the backbone sees (views), datasets
and their formats (datasets), segment annotations (segments), grammars of what follows what
(grammar), synthetic videos (synthetic), composed sequences (compose) and the video writer (writer).
Nothing here imports models, training or inference."""
# `pipeline.data` was the datasets module before the package was split: its names stay importable here.
from pipeline.data.datasets import *  # noqa: F401,F403
from pipeline.data.datasets import DataError, Dataset, Sample  # noqa: F401
