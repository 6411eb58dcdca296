"""big_policy_gen: a large, deterministic, realistic block directive for the big-policy benchmark
(tools/big_policy_bench.py).

  directive_text(n_domains, n_prefixes, seed, **header) -> (yaml text, facts)

Domains: 2-4 labels built from syllables under a spread of real TLDs (some second-level ones
like co.uk), about 8% subdomain patterns ("*.x"), about 2% IDN names: most written as A-labels
("xn--..."), some as U-labels (Cyrillic) the controller converts, each name unique after that
conversion. Prefixes: IPv4 /12../32 (mostly /24) and IPv6 /29../128 (mostly /48), host bits
clear, unique, none inside the ranges the benchmark's own traffic uses (10/8, 127/8, 0/8,
224/3, fc00::/7, fe80::/10) so the flow that must keep flowing is not named by accident.
telegram.org, *.telegram.org and Telegram's 149.154.160.0/20 are always in, so enforcement can
be checked by name and by address. Same arguments, same bytes."""

import ipaddress
import random

TLDS = ["com"] * 30 + ["net"] * 8 + ["org"] * 6 + ["ru"] * 6 + ["info"] * 3 + ["io"] * 2 + [
    "xyz", "top", "online", "site", "de", "fr", "nl", "pl", "ua", "kz", "by", "tr", "ir",
    "in", "br", "cn", "jp", "me", "tv", "cc", "biz", "club", "shop", "app", "dev",
    "co.uk", "com.tr", "com.br", "co.jp", "com.au", "org.uk", "net.ru", "com.ua", "co.in"]
SYLLABLES = ["ka", "lo", "mi", "ra", "te", "no", "vi", "sa", "do", "re", "pa", "zu", "ki",
             "be", "ma", "ni", "to", "la", "se", "ro", "fa", "go", "hu", "ja", "ke", "li",
             "mo", "nu", "pe", "qu", "ri", "su", "ta", "ve", "wa", "xe", "yo", "ze", "an",
             "el", "in", "on", "ur", "ex", "ol", "ar", "is", "um", "et", "os"]
WORDS = ["news", "cdn", "api", "static", "media", "img", "video", "stream", "chat", "proxy",
         "vpn", "mail", "app", "web", "files", "dl", "m", "www", "edge", "cloud", "live",
         "data", "login", "auth", "shop", "blog", "forum", "tv", "music", "game", "bet"]
CYRILLIC = "абвгдежзиклмнопрстуфхцчшэюя"
RESERVED = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "127.0.0.0/8", "224.0.0.0/3", "169.254.0.0/16",
    "fc00::/7", "fe80::/10", "::/8", "ff00::/8")]
TELEGRAM_DOMAINS = ["telegram.org", "*.telegram.org"]
TELEGRAM_PREFIX = "149.154.160.0/20"
V4_LENGTHS = [(24, 60), (23, 6), (22, 8), (21, 4), (20, 5), (19, 2), (18, 2), (16, 3), (12, 1),
              (32, 6), (28, 2), (30, 1)]
V6_LENGTHS = [(48, 50), (32, 10), (29, 3), (36, 3), (40, 5), (44, 5), (56, 8), (64, 10), (128, 6)]


def _weighted(rng, table):
    total = sum(w for _, w in table)
    x = rng.randrange(total)
    for v, w in table:
        if x < w:
            return v
        x -= w
    return table[-1][0]


def _word(rng):
    if rng.random() < 0.25:
        return rng.choice(WORDS) + (str(rng.randrange(100)) if rng.random() < 0.3 else "")
    w = "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 5)))
    if rng.random() < 0.15:
        w += "-" + "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(1, 3)))
    if rng.random() < 0.1:
        w += str(rng.randrange(1000))
    return w


def _idn_label(rng):
    u = "".join(rng.choice(CYRILLIC) for _ in range(rng.randint(4, 10)))
    return u, "xn--" + u.encode("punycode").decode("ascii")


def domains(n, rng):
    """n unique rule names (as written, with their canonical A-label form deduplicated)."""
    out, seen = list(TELEGRAM_DOMAINS), set(TELEGRAM_DOMAINS)
    while len(out) < n:
        tld = rng.choice(TLDS)
        labels_as_written, labels_canon = [], []
        r = rng.random()
        if r < 0.02:  # an IDN second-level name: mostly A-label, some U-label
            u, a = _idn_label(rng)
            labels_as_written.append(u if rng.random() < 0.25 else a)
            labels_canon.append(a)
        else:
            w = _word(rng)
            labels_as_written.append(w)
            labels_canon.append(w)
        for _ in range(_weighted(rng, [(0, 55), (1, 35), (2, 10)])):
            w = _word(rng)
            labels_as_written.insert(0, w)
            labels_canon.insert(0, w)
        canon = ".".join(labels_canon + [tld])
        written = ".".join(labels_as_written + [tld])
        if rng.random() < 0.08:
            canon, written = "*." + canon, "*." + written
        if canon in seen or len(canon) > 250:
            continue
        seen.add(canon)
        out.append(written)
    return out[:n]


def _clear(net):
    return not any(net.overlaps(r) for r in RESERVED)


def prefixes(n, rng):
    """n unique prefixes, about 80% IPv4, host bits clear, none in RESERVED."""
    out, seen = [TELEGRAM_PREFIX], {TELEGRAM_PREFIX}
    while len(out) < n:
        if rng.random() < 0.8:
            length = _weighted(rng, V4_LENGTHS)
            addr = rng.getrandbits(32)
            net = ipaddress.IPv4Network((addr >> (32 - length) << (32 - length), length))
        else:
            length = _weighted(rng, V6_LENGTHS)
            addr = (0x2 << 124) | rng.getrandbits(125)  # inside 2000::/3, global unicast
            addr &= (1 << 128) - 1
            net = ipaddress.IPv6Network((addr >> (128 - length) << (128 - length), length))
        text = str(net)
        if text in seen or not _clear(net):
            continue
        seen.add(text)
        out.append(text)
    return out[:n]


def _yaml_item(name):
    # Patterns start with '*', which YAML reads as an alias: quote them (and U-labels, to be plain).
    return '"%s"' % name if name.startswith("*") or not name.isascii() else name


def directive_text(n_domains, n_prefixes, seed, directive_id, issuer, issued_at, not_before,
                   legal_basis, response="reset"):
    """The directive (block, scope all) as YAML text, and facts about it."""
    rng = random.Random(seed)
    names = domains(n_domains, rng)
    nets = prefixes(n_prefixes, rng)
    parts = ["# written by tools/big_policy_gen.py: %d domains, %d prefixes, seed %d\n"
             % (len(names), len(nets), seed),
             "id: %s\nissuer: %s\nissued_at: %s\nlegal_basis: \"%s\"\naction: block\n"
             "response: %s\nscope: all\nnot_before: %s\ntargets:\n  prefixes:\n"
             % (directive_id, issuer, issued_at, legal_basis, response, not_before)]
    parts.extend("    - %s\n" % p for p in nets)
    parts.append("  domains:\n")
    parts.extend("    - %s\n" % _yaml_item(d) for d in names)
    facts = {
        "domains": len(names),
        "patterns": sum(1 for d in names if d.startswith("*.")),
        "idn": sum(1 for d in names if "xn--" in d or not d.isascii()),
        "u_labels": sum(1 for d in names if not d.isascii()),
        "prefixes": len(nets),
        "prefixes_v4": sum(1 for p in nets if ":" not in p),
        "prefixes_v6": sum(1 for p in nets if ":" in p),
    }
    return "".join(parts), facts
