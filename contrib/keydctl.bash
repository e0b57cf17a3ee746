# bash completion for keydctl(1). Installed by `make install` as $(PREFIX)/share/bash-completion/completions/keydctl.
#
# Commands and options come from keydctl itself (keydctl --help, keydctl COMMAND --help), so that the completion
# never lags behind the program; the values of options that take a fixed set are listed here.

_keydctl_commands() {
        keydctl --help 2>/dev/null | sed -n '/^Commands:/,/^$/{s/^  \([a-z][a-z-]*\)\( [a-z][a-z-]*\)\{0,1\}.*/\1\2/p}' |
                sed 's/ [A-Z[].*//'
}

# The long options a command's help lists ("  -n, --lines N", "      --json"), and the global ones.
_keydctl_options() {
        keydctl "$@" --help 2>/dev/null | grep -o -- '--[a-z][a-z-]*' | sort -u
        printf '%s\n' --json --socket --timeout --help
}

_keydctl() {
        local cur prev words cword
        _init_completion 2>/dev/null || {
                cur=${COMP_WORDS[COMP_CWORD]}
                prev=${COMP_WORDS[COMP_CWORD - 1]}
                words=("${COMP_WORDS[@]}")
                cword=$COMP_CWORD
        }

        case $prev in
        --kind) COMPREPLY=($(compgen -W 'issuer agent' -- "$cur")); return ;;
        --alg) COMPREPLY=($(compgen -W 'ES256 ES384 RS256 PS256 EdDSA' -- "$cur")); return ;;
        --rsa-bits) COMPREPLY=($(compgen -W '2048 3072 4096' -- "$cur")); return ;;
        --publish | --allow-raw-sign) COMPREPLY=($(compgen -W 'yes no' -- "$cur")); return ;;
        --reason) COMPREPLY=($(compgen -W 'key_compromise superseded cessation unspecified' -- "$cur")); return ;;
        --socket | --anchor) _filedir 2>/dev/null || COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --timeout | --ttl | --leeway | --within | --rotation-period | --prepublish | --token-ttl-max | \
                --default-ttl | --clock-skew | --exp | --before | --sub | --aud | --audience | --issuer | --scope | \
                --claim | --act | --owner-uid | --token-type | --sign-users | --sign-groups | --keyring | \
                --bind-agent | --lines | -n | --after)
                return ;;
        esac

        # The command so far: the words that are not options (or their values) after "keydctl".
        local i cmd=() w
        for ((i = 1; i < cword; i++)); do
                w=${words[i]}
                case $w in
                --socket | --timeout) ((i++)) ;;
                -*) ;;
                *) cmd+=("$w") ;;
                esac
        done

        local commands
        commands=$(_keydctl_commands)
        if [[ $cur == -* ]]; then
                if ((${#cmd[@]} > 0)); then
                        COMPREPLY=($(compgen -W "$(_keydctl_options "${cmd[@]:0:2}")" -- "$cur"))
                else
                        COMPREPLY=($(compgen -W '--json --socket --timeout --help --version' -- "$cur"))
                fi
                return
        fi
        case ${#cmd[@]} in
        0) COMPREPLY=($(compgen -W "$(printf '%s\n' $commands | cut -d' ' -f1 | sort -u) help" -- "$cur")) ;;
        1)
                # The second word of a group (keyring show, token revoke, audit tail, key show).
                local subs
                subs=$(printf '%s\n' "$commands" | sed -n "s/^${cmd[0]} \\([a-z-]*\\)$/\\1/p")
                [[ -n $subs ]] && COMPREPLY=($(compgen -W "$subs" -- "$cur"))
                ;;
        esac
}

complete -F _keydctl keydctl
