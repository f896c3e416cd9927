"""Topics as code: declarations in ``topics/*.yaml``, validated offline, planned and applied.

Layers, each importing only those above it::

    _configs   Kafka 4.x topic config keys and their value rules      (pure)
    _spec      the declaration models and ``Problem``                  (pure)
    _load      YAML files → ``TopicDeclarations``, with file and line  (files)
    _overlay   an environment's overlay of those files (``--dir``)     (files)
    _validate  offline rules; ``load_topics`` = load + validate        (files)
    _cluster   the observed cluster as plain data                      (pure)
    _plan      ``diff_topics``: declarations + cluster → ``TopicPlan``  (pure)
    _admin     the aiokafka adapter: read the cluster, make changes    (Kafka)
    _export    observed topics → a declarations file                   (pure)
    _apply     ``plan_topics``/``apply_topics``/``describe_topics``     (Kafka)
    _words     counted nouns for the lines mesh writes (``plural``)    (pure)

Typical use::

    declarations = load_topics(Path("topics"), prefix=settings.topic_prefix)
    # on a 3-broker cluster: load_topics(Path("topics/overlays/cluster"), prefix=...)
    plan = await plan_topics(settings, declarations.topics)
    result = await apply_topics(settings, declarations.topics, allow_delete=False)
"""

from mesh.topics._apply import (
    ApplyResult,
    apply_topics,
    describe_topics,
    plan_topics,
    read_cluster,
)
from mesh.topics._cluster import (
    Api,
    BrokerCapabilities,
    ClusterState,
    ObservedConfig,
    ObservedTopic,
)
from mesh.topics._configs import TOPIC_CONFIGS, config_problem
from mesh.topics._export import EXPORT_FILE, declared_topics, export_declarations
from mesh.topics._load import DEFAULT_DIR
from mesh.topics._overlay import OVERLAY_FILE, load_declarations
from mesh.topics._plan import (
    Change,
    ChangeKind,
    ChangeStatus,
    ConfigDiff,
    Note,
    TopicPlan,
    beyond,
    diff_topics,
    open_prefix,
)
from mesh.topics._spec import Problem, TopicDeclarations, TopicSpec
from mesh.topics._validate import load_topics, summarize, validate_declarations
from mesh.topics._words import listed, plural

__all__ = [
    "DEFAULT_DIR",
    "EXPORT_FILE",
    "OVERLAY_FILE",
    "TOPIC_CONFIGS",
    "Api",
    "ApplyResult",
    "BrokerCapabilities",
    "Change",
    "ChangeKind",
    "ChangeStatus",
    "ClusterState",
    "ConfigDiff",
    "Note",
    "ObservedConfig",
    "ObservedTopic",
    "Problem",
    "TopicDeclarations",
    "TopicPlan",
    "TopicSpec",
    "apply_topics",
    "beyond",
    "config_problem",
    "declared_topics",
    "describe_topics",
    "diff_topics",
    "export_declarations",
    "listed",
    "load_declarations",
    "load_topics",
    "open_prefix",
    "plan_topics",
    "plural",
    "read_cluster",
    "summarize",
    "validate_declarations",
]
