"""``dfxsdk plugins``: list every plugin, what it provides, and which failed to load."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import EXIT_OK, EXIT_PLUGIN
from ..hookspecs import PLUGIN_API_VERSION
from ..plugins import get_manager


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plugins", help="list installed plugins and what they provide",
        description="List every plugin found through the 'dfxsdk' entry point group (or registered "
                    "from code), with its package, version and the importers, quantizers, backends "
                    "and custom operators it provides, every plugin that failed to load with "
                    "the reason, provider names offered by two plugins (a clash: neither is used) "
                    "and the plugins switched off (-p no:NAME, DFXSDK_DISABLE_PLUGINS). With --debug, "
                    "the traceback of each failure.")
    p.add_argument("--json", action="store_true", help="print the list as JSON")
    p.add_argument("--strict", action="store_true",
                   help="exit with code 4 if any plugin failed to load or a name clashes (for CI)")
    p.set_defaults(func=run)


def report() -> dict:
    """The plugin list as plain data."""
    pm = get_manager()
    plugins = [{
        "name": p.info.name, "version": p.info.version,
        "package": p.package, "package_version": p.package_version, "source": p.source,
        "api_version": ".".join(map(str, p.info.api_version)), "description": p.info.description,
        "extra": dict(p.info.extra),
        "importers": [{"name": i.name, "extensions": list(i.extensions), "description": i.description}
                      for i in p.importers],
        "quantizers": [{"name": q.name, "description": q.description} for q in p.quantizers],
        "backends": [{"name": b.name, "modes": list(b.modes), "supported_ops": sorted(b.supported_ops),
                      "description": b.description} for b in p.backends],
        "custom_operators": [{"name": c.name, "versions": list(c.versions), "description": c.description}
                             for c in p.custom_operators],
    } for p in pm.plugins]
    failures = [{"name": f.name, "package": f.package, "package_version": f.package_version,
                 "source": f.source, "reason": f.reason} for f in pm.failures]
    disabled = [{"name": d.name, "package": d.package, "package_version": d.package_version, "source": d.source}
                for d in pm.disabled]
    clashes = [{"kind": c.kind, "name": c.name, "message": c.message(),
                "plugins": [{"name": p.info.name, "package": p.package} for p, _ in c.offers]}
               for c in pm.clashes]
    return {"api_version": ".".join(map(str, PLUGIN_API_VERSION)), "plugins": plugins,
            "failed": failures, "disabled": disabled, "clashes": clashes}


def run(args: argparse.Namespace) -> int:
    rep = report()
    code = EXIT_PLUGIN if args.strict and (rep["failed"] or rep["clashes"]) else EXIT_OK
    if args.json:
        print(json.dumps(rep, indent=2))
        return code
    print(f"plugin API {rep['api_version']}; {len(rep['plugins'])} plugin(s) loaded, "
          f"{len(rep['failed'])} failed")
    for p in rep["plugins"]:
        pkg = f"package {p['package']} {p['package_version']}, " if p["package"] else ""
        print(f"\n{p['name']} {p['version']}  ({pkg}{p['source']}, plugin API {p['api_version']})")
        if p["description"]:
            print(f"  {p['description']}")
        for i in p["importers"]:
            exts = " ".join(i["extensions"]) or "(by content)"
            print(f"  importer  {i['name']:<12} {exts:<24} {i['description']}")
        for q in p["quantizers"]:
            print(f"  quantizer {q['name']:<12} {q['description']}")
        for b in p["backends"]:
            ops = f"; {len(b['supported_ops'])} ops" if b["supported_ops"] else ""
            print(f"  backend   {b['name']:<12} modes: {', '.join(b['modes'])}{ops}  {b['description']}")
        for c in p["custom_operators"]:
            versions = ",".join(map(str, c["versions"]))
            print(f"  operator  {c['name']:<12} v{versions}  {c['description']}")
    pm = get_manager()
    for f in pm.failures:
        where = f"package {f.package} {f.package_version}, " if f.package else ""
        print(f"\nFAILED {f.name}  ({where}{f.source})\n  {f.reason}")
        if getattr(args, "debug", False) and f.detail:
            print("  " + f.detail.rstrip().replace("\n", "\n  "))
    for c in rep["clashes"]:
        print(f"\nCLASH {c['message']}")
    for d in rep["disabled"]:
        where = f"package {d['package']} {d['package_version']}, " if d["package"] else ""
        print(f"\nswitched off: {d['name']}  ({where}{d['source']})")
    if rep["failed"]:
        print(f"\n{len(rep['failed'])} plugin(s) could not be loaded; the others are usable.",
              file=sys.stderr)
    return code
