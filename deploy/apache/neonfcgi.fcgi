#!/bin/sh
# mod_fcgid wrapper for neonfcgi (see neonfcgi-fcgid.conf). Install it as
# <cgi-bin>/neonfcgi.fcgi, mode 0755.
#
# Placeholders, plain strings replaced by the integration tests (sed-like):
#     /usr/local/bin/neonfcgi          the binary (make install PREFIX=...), or
#                                      a copy in your home directory
#     /home/example/neonfcgi.env       the env file with DATABASE_URL etc.:
#                                      outside the document root, owned by the
#                                      user the site runs as, mode 0600
#
# FcgidInitialEnv ENV_FILE ... in the server configuration overrides the path.
ENV_FILE=${ENV_FILE:-/home/example/neonfcgi.env}
export ENV_FILE
# exec: mod_fcgid's signals (SIGTERM to stop) must reach neonfcgi itself,
# not a shell waiting for it.
exec /usr/local/bin/neonfcgi
