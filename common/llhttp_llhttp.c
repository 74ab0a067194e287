/* Debian 12 ships llhttp only as C sources (package node-llhttp); configure
 * points the include path at them and this file compiles llhttp.c into
 * libllhttp.a. With a system libllhttp this file is not built. */
#include <llhttp.c>
