/* Socket addresses as text, for logs, the access log and configuration
 * names: one spelling everywhere an address is shown. */
#ifndef RD_SOCKADDR_H
#define RD_SOCKADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* The address part of SA as text ("192.0.2.1", "2001:db8::1"); "?" for a
 * family other than IPv4 and IPv6. */
void rd_sockaddr_ip_text(const struct sockaddr *sa, char *out, size_t len);

/* SA with its port: "192.0.2.1:18000", "[2001:db8::1]:18000". */
void rd_sockaddr_text(const struct sockaddr *sa, char *out, size_t len);

#endif
