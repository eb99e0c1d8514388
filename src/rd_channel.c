#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "rd_channel.h"

int rd_channel_open(int fds[2])
{
    return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds);
}

int rd_channel_send(int fd, uint8_t type, uint32_t value)
{
    rd_channel_msg_t msg;
    ssize_t n;

    /* No padding byte may go out uninitialised (valgrind would say so). */
    memset(&msg, 0, sizeof(msg));
    msg.type = type;
    msg.value = value;
    do
        n = send(fd, &msg, sizeof(msg), MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof(msg) ? 0 : -1;
}

int rd_channel_recv(int fd, rd_channel_msg_t *msg)
{
    ssize_t n;

    do
        n = recv(fd, msg, sizeof(*msg), 0);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof(*msg))
        return 1;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    return -1;
}
