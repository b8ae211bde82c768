"""``dfxsdk plugins``: list every plugin, what it provides, and which failed to load."""

from __future__ import annotations

import argparse
import json

from ..hookspecs import PLUGIN_API_VERSION
from ..plugins import get_manager


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plugins", help="list installed plugins and what they provide",
        description="List every plugin found through the 'dfxsdk' entry point group, with its "
                    "package, version and the importers, quantizers, backends and custom operators "
                    "it provides, and every plugin that failed to load with the reason.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.set_defaults(func=run)


def report() -> dict:
    """The plugin list as plain data."""
    pm = get_manager()
    plugins = [{
        "name": p.info.name, "version": p.info.version, "source": p.source,
        "api_version": ".".join(map(str, p.info.api_version)), "description": p.info.description,
        "importers": [{"name": i.name, "extensions": list(i.extensions), "description": i.description}
                      for i in p.importers],
        "quantizers": [{"name": q.name, "description": q.description} for q in p.quantizers],
        "backends": [{"name": b.name, "modes": list(b.modes), "description": b.description}
                     for b in p.backends],
        "custom_operators": [c.name for c in p.custom_operators],
    } for p in pm.plugins]
    failures = [{"name": f.name, "source": f.source, "reason": f.reason} for f in pm.failures]
    return {"api_version": ".".join(map(str, PLUGIN_API_VERSION)), "plugins": plugins,
            "failed": failures}


def run(args: argparse.Namespace) -> int:
    rep = report()
    if args.json:
        print(json.dumps(rep, indent=2))
        return 0
    print(f"plugin API {rep['api_version']}; {len(rep['plugins'])} plugins loaded, "
          f"{len(rep['failed'])} failed")
    for p in rep["plugins"]:
        print(f"\n{p['name']} {p['version']}  [{p['source']}]  API {p['api_version']}")
        if p["description"]:
            print(f"  {p['description']}")
        for i in p["importers"]:
            print(f"  importer  {i['name']:<10} {' '.join(i['extensions']):<24} {i['description']}")
        for q in p["quantizers"]:
            print(f"  quantizer {q['name']:<10} {q['description']}")
        for b in p["backends"]:
            print(f"  backend   {b['name']:<10} modes: {', '.join(b['modes']):<24} {b['description']}")
        for c in p["custom_operators"]:
            print(f"  operator  {c}")
    for f in rep["failed"]:
        print(f"\nFAILED {f['name']}  [{f['source']}]\n  {f['reason']}")
    return 0
