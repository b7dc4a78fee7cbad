# bash completion for sandbox-service(1)                   -*- shell-script -*-
# Install as /usr/share/bash-completion/completions/sandbox-service.

# Sandboxes: directories below /var/lib/sandbox-service that hold a spec file.
_sandbox_service_names()
{
    local d
    for d in /var/lib/sandbox-service/*/; do
        [[ -f ${d}sandbox.yaml ]] || continue
        d=${d%/}
        printf '%s\n' "${d##*/}"
    done
}

# Service units that can be wrapped (templates cannot).
_sandbox_service_units()
{
    systemctl list-unit-files --type=service --no-legend 2>/dev/null |
        awk '$1 !~ /@\.service$/ { print $1 }'
}

# Security profiles: the shipped ones and the administrator's.
_sandbox_service_profiles()
{
    local f
    printf '%s\n' default strict trusted nonetwork dense
    for f in /usr/share/sandbox-service/profiles/*.conf /etc/sandbox-service/profiles/*.conf; do
        [[ -f $f ]] || continue
        f=${f##*/}
        printf '%s\n' "${f%.conf}"
    done
}

# Network modes with the host's bridges: bridge=BR for each.
_sandbox_service_bridges()
{
    local d
    for d in /sys/class/net/*/bridge; do
        [[ -d $d ]] || continue
        d=${d%/bridge}
        printf 'bridge=%s\n' "${d##*/}"
    done
}

# COMPREPLY from compgen's output, one candidate per line.
_sandbox_service_reply()
{
    mapfile -t COMPREPLY < <(compgen "$@")
}

_sandbox_service()
{
    # bash splits "--opt=value" at "="; join the pieces again.
    local -a words=()
    local i w cword=0
    for ((i = 0; i < ${#COMP_WORDS[@]}; i++)); do
        w=${COMP_WORDS[i]}
        if ((${#words[@]} > 1)) && [[ ${words[-1]} == --* && ($w == = || ${words[-1]} == *=) ]]; then
            words[-1]+=$w
        else
            words+=("$w")
        fi
        ((i == COMP_CWORD)) && cword=$((${#words[@]} - 1))
    done
    local cur=${words[cword]}

    local global_opts='--debug --root --version --install-completion --show-completion -h --help'
    local commands='create apply start stop restart reload status list limits logs delete upgrade
        profiles execute connect clone copy enable disable'
    local create_opts='-u --unit -P --package -C --copy --user --group --memory --cpu-quota
        --cpu-weight --io-weight --tasks-max --chroot --selinux --description --enable --now
        --profile --memory-deny-write-execute --allow-write-execute --private-users
        --no-private-users --user-namespace --no-user-namespace --run-size --max-exposure --exist-ok --network -p --publish --allow-ip --deny-ip
        --dry-run --json --no-wait -h --help --'
    # Options that take a value (the next word, or after "=").
    local value_opts=' --root -u --unit -P --package -C --copy --user --group --memory --cpu-quota
        --cpu-weight --io-weight --tasks-max --chroot --selinux --description -n --lines
        --profile --max-exposure --shell --network -p --publish --allow-ip --deny-ip '

    # Walk the words before the cursor: the command, its arguments, an option still waiting for its value.
    local cmd='' pending='' nargs=0 dashdash=0
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        if [[ -n $pending ]]; then
            pending=''
        elif ((dashdash)); then
            ((nargs++))
        elif [[ $w == -- && ($cmd == create || $cmd == execute) ]]; then
            dashdash=1
        elif [[ $w == -* ]]; then
            [[ $value_opts == *[[:space:]]$w[[:space:]]* ]] && pending=$w
        elif [[ -z $cmd ]]; then
            cmd=$w
        else
            ((nargs++))
        fi
    done

    # An option's value: "--opt VALUE" or "--opt=VALUE".
    local opt=$pending
    if [[ -z $opt && $dashdash == 0 && $cur == --*=* ]]; then
        opt=${cur%%=*}
        cur=${cur#*=}
    fi
    if [[ -n $opt ]]; then
        case $opt in
            --root | --chroot)
                compopt -o filenames 2>/dev/null
                _sandbox_service_reply -d -- "$cur"
                ;;
            -C | --copy)
                compopt -o filenames 2>/dev/null
                _sandbox_service_reply -f -- "$cur"
                ;;
            -u | --unit) _sandbox_service_reply -W "$(_sandbox_service_units)" -- "$cur" ;;
            --user) _sandbox_service_reply -u -- "$cur" ;;
            --group) _sandbox_service_reply -g -- "$cur" ;;
            --selinux) _sandbox_service_reply -W 'auto enabled disabled' -- "$cur" ;;
            --network) _sandbox_service_reply -W "none host $(_sandbox_service_bridges)" -- "$cur" ;;
            --profile) _sandbox_service_reply -W "$(_sandbox_service_profiles)" -- "$cur" ;;
            --shell)
                compopt -o filenames 2>/dev/null
                _sandbox_service_reply -f -- "$cur"
                ;;
            *) COMPREPLY=() ;;
        esac
        return 0
    fi

    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            _sandbox_service_reply -W "$global_opts" -- "$cur"
        else
            _sandbox_service_reply -W "$commands" -- "$cur"
        fi
        return 0
    fi

    # create|execute NAME [--] COMMAND [ARGUMENT...]: a program first, then files.
    if [[ $cmd == create || $cmd == execute ]] && { ((dashdash)) || { ((nargs >= 1)) && [[ $cur != -* ]]; }; }; then
        compopt -o filenames 2>/dev/null
        if ((nargs <= 1)) && [[ $cur != */* ]]; then
            _sandbox_service_reply -c -- "$cur"
        else
            _sandbox_service_reply -f -- "$cur"
        fi
        return 0
    fi

    local opts='-h --help' names=0
    case $cmd in
        create) opts=$create_opts ;;
        start | stop | restart) names=1 ;;
        delete) opts='--keep-data --no-wait -h --help' names=1 ;;
        upgrade) opts='--all --no-restart --dry-run --json --no-wait -h --help' names=1 ;;
        reload) ((nargs == 0)) && names=1 ;;
        status) opts='--exposure --json -h --help' && ((nargs == 0)) && names=1 ;;
        logs) opts='-f --follow -n --lines -h --help' && ((nargs == 0)) && names=1 ;;
        list | limits) opts='--json -h --help' ;;
        apply) opts='--prune --dry-run --json --no-wait -h --help' ;;
        profiles) opts='--json -h --help' ;;
        execute) ((nargs == 0)) && names=1 ;;
        clone) opts='--no-wait -h --help' && ((nargs == 0)) && names=1 ;;
        copy)
            opts='--dry-run --json --no-wait -h --help'
            if ((nargs == 0)); then
                names=1
            elif [[ $cur != -* ]]; then
                compopt -o filenames 2>/dev/null
                _sandbox_service_reply -f -- "$cur"
                return 0
            fi
            ;;
        connect) opts='--shell -h --help' && ((nargs == 0)) && names=1 ;;
        enable | disable) opts='--no-wait -h --help' names=1 ;;
        *) return 0 ;;
    esac
    if [[ $cur == -* ]]; then
        _sandbox_service_reply -W "$opts" -- "$cur"
    elif ((names)); then
        _sandbox_service_reply -W "$(_sandbox_service_names)" -- "$cur"
    elif [[ $cmd == profiles ]] && ((nargs == 0)); then
        _sandbox_service_reply -W "$(_sandbox_service_profiles)" -- "$cur"
    elif [[ $cmd == apply ]] && ((nargs == 0)); then
        compopt -o filenames 2>/dev/null
        _sandbox_service_reply -f -- "$cur"
    fi
    return 0
} &&
    complete -F _sandbox_service sandbox-service

# ex: filetype=sh
