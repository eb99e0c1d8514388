/* Socket addresses as text (see include/rd_sockaddr.h). */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>

#include "rd_sockaddr.h"

void rd_sockaddr_ip_text(const struct sockaddr *sa, char *out, size_t len)
{
    const void *addr = sa->sa_family == AF_INET6
        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;

    if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
        || inet_ntop(sa->sa_family, addr, out, (socklen_t)len) == NULL)
        snprintf(out, len, "?");
}

void rd_sockaddr_text(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port = sa->sa_family == AF_INET6
        ? ntohs(((const struct sockaddr_in6 *)sa)->sin6_port)
        : ntohs(((const struct sockaddr_in *)sa)->sin_port);

    rd_sockaddr_ip_text(sa, ip, sizeof(ip));
    snprintf(out, len, sa->sa_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}
