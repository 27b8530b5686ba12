"""Fast ``--help``: list the config groups from one copy of Hydra's config repository.

To print the groups, Hydra 1.3 asks for the options of every group and sub-group (about 130 calls here), and
each call deep-copies the whole config repository first; that alone took 1.5 s of a 1.7 s ``--help``. The
search path cannot change while one help text is printed, so on the help path every listing with the same
config name and overrides reads the same copy.
"""

from __future__ import annotations

import sys

HELP_FLAGS = frozenset({"--help", "-h", "--hydra-help"})


def list_groups_once(argv: list[str] | None = None) -> None:
    """Share one repository copy between Hydra's group listings when ``argv`` asks for help; else do nothing."""
    args = sys.argv[1:] if argv is None else argv
    if not HELP_FLAGS.intersection(args):
        return
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.object_type import ObjectType

    if getattr(ConfigLoaderImpl.get_group_options, "shares_repository", False):
        return
    repositories: dict[tuple, object] = {}

    def get_group_options(self, group_name, results_filter=ObjectType.CONFIG, config_name=None, overrides=None):
        key = (id(self), config_name, tuple(overrides or ()))
        if key not in repositories:
            repositories[key] = self._parse_overrides_and_create_caching_repo(config_name, list(overrides or ()))[1]
        return repositories[key].get_group_options(group_name, results_filter)

    get_group_options.shares_repository = True
    ConfigLoaderImpl.get_group_options = get_group_options
