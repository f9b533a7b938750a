/* LD_PRELOAD shim: set TCP_NODELAY on every TCP socket returned by accept()/accept4().
 * Garage does not set it, so small responses on kept-alive connections wait ~40 ms
 * for the client's delayed ACK. Built and used by scripts/s3-server.sh.
 *   gcc -shared -fPIC -O2 -o nodelay.so nodelay.c -ldl */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static void nodelay(int fd) {
    int proto = 0, one = 1;
    socklen_t len = sizeof proto;
    if (fd >= 0 && getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_TCP)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int accept(int s, struct sockaddr *addr, socklen_t *alen) {
    static int (*real)(int, struct sockaddr *, socklen_t *);
    if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *))dlsym(RTLD_NEXT, "accept");
    int fd = real(s, addr, alen);
    nodelay(fd);
    return fd;
}

int accept4(int s, struct sockaddr *addr, socklen_t *alen, int flags) {
    static int (*real)(int, struct sockaddr *, socklen_t *, int);
    if (!real) real = (int (*)(int, struct sockaddr *, socklen_t *, int))dlsym(RTLD_NEXT, "accept4");
    int fd = real(s, addr, alen, flags);
    nodelay(fd);
    return fd;
}
