/* rd_client.c: request frames byte for byte, answers parsed and opened
 * (each encryption type, forged answers), and exchanges over real TCP and
 * UDP sockets with a one-request server in a thread. */
#include "config.h"

#include <pthread.h>
#include <netinet/in.h>

#include "protocol_fixture.h"
#include "rd_client.h"

static void test_client_build_bytes(void **state)
{
    (void)state;
    const uint8_t payload[3] = { 0xDE, 0xAD, 0x01 };
    rd_client_request_t r = {
        .raida_id = 24, .coin_id = 0x0203, .shard = 1, .group = 5, .command = 9,
        .echo = 0x4321, .payload = payload, .payload_len = sizeof(payload),
    };
    uint8_t out[128], challenge[16];
    size_t len = rd_client_build(&r, out, sizeof(out), challenge);
    assert_int_equal(len, RD_LEGACY_HEADER_SIZE + RD_CHALLENGE_SIZE + 3 + RD_TRAILER_SIZE);
    /* The whole header as literal bytes: what rd_client puts where is the test. */
    const uint8_t header[RD_LEGACY_HEADER_SIZE] = {
        1, 0, 24, 1, 5, 9, 0x02, 0x03, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 21, 0, 0, 0, 0, 0, 0, 0x43, 0x21,
    };
    assert_memory_equal(out, header, RD_LEGACY_HEADER_SIZE);
    const uint8_t *body = out + RD_LEGACY_HEADER_SIZE;
    assert_int_equal(rd_get_be(body + RD_CRC_INPUT_SIZE, RD_CHALLENGE_SIZE - RD_CRC_INPUT_SIZE),
                     (uint32_t)crc32(0L, body, RD_CRC_INPUT_SIZE));
    assert_memory_equal(challenge, body, RD_CHALLENGE_SIZE);
    assert_memory_equal(body + RD_CHALLENGE_SIZE, payload, 3);
    assert_int_equal(body[RD_CHALLENGE_SIZE + 3], RD_TRAILER_BYTE);
    assert_int_equal(body[RD_CHALLENGE_SIZE + 4], RD_TRAILER_BYTE);

    /* Two requests do not share a challenge. */
    uint8_t again[16];
    assert_int_equal(rd_client_build(&r, out, sizeof(out), again), len);
    assert_memory_not_equal(challenge, again, 12);

    assert_int_equal(rd_client_build(&r, out, len - 1, NULL), 0);
    assert_int_equal(rd_client_build(&r, out, len, NULL), len);
}

static void test_client_round_trip(void **state)
{
    fixture_t *f = *state;
    rd_client_request_t r = {
        .raida_id = RAIDA_ID, .coin_id = COIN_ID, .group = 0, .command = 1, .echo = 0x0A0B,
    };
    uint8_t frame[128], challenge[16];
    size_t len = rd_client_build(&r, frame, sizeof(frame), challenge);
    assert_int_equal(len, 50);
    handle(f, frame, len);

    rd_client_response_t resp;
    assert_int_equal(rd_client_parse(f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.raida_id, RAIDA_ID);
    assert_int_equal(resp.shard, 0);
    assert_int_equal(resp.status, 250);
    assert_int_equal(resp.group, 0);
    assert_int_equal(resp.frames, 1);
    assert_int_equal(resp.echo, 0x0A0B);
    assert_int_equal(resp.body_size, 10);
    assert_true(resp.exec_us < EXEC_LIMIT);
    assert_memory_equal(resp.challenge_hash, challenge, 16);
    assert_int_equal(resp.payload_len, 8);
    assert_memory_equal(resp.payload, RAIDAD_BUILD_VERSION, 8);

    /* Stats with the key as payload. */
    r.command = 2;
    r.payload = admin_key;
    r.payload_len = 16;
    len = rd_client_build(&r, frame, sizeof(frame), challenge);
    assert_int_equal(len, 66);
    rd_request_t req;
    handle_tcp(f, &req, frame, len, "127.0.0.1");
    assert_int_equal(rd_client_parse(f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.status, 250);
    assert_memory_equal(resp.challenge_hash, challenge, 16);
    assert_int_equal(rd_get_be(resp.payload + 4, 8), 1);
}

static void test_client_parse_rejects(void **state)
{
    (void)state;
    uint8_t buf[64] = { 0 };
    uint8_t *body = buf + RD_LEGACY_HEADER_SIZE;
    rd_client_response_t r;
    assert_int_equal(rd_client_parse(buf, RD_LEGACY_HEADER_SIZE - 1, &r), -1);
    assert_int_equal(rd_client_parse(buf, RD_LEGACY_HEADER_SIZE, &r), 0);  /* no body at all */
    assert_int_equal(r.payload_len, 0);

    rd_put_be(buf + RD_RESP_BODY_SIZE, 10, RD_RESP_BODY_SIZE_SIZE);    /* 8 bytes + trailer */
    memcpy(body, "20261125", 8);
    body[8] = RD_TRAILER_BYTE;
    body[9] = RD_TRAILER_BYTE;
    assert_int_equal(rd_client_parse(buf, 42, &r), 0);
    assert_int_equal(r.payload_len, 8);
    assert_int_equal(rd_client_parse(buf, 41, &r), -1);     /* truncated */
    assert_int_equal(rd_client_parse(buf, RD_LEGACY_HEADER_SIZE, &r), -1);
    body[9] = 0;
    assert_int_equal(rd_client_parse(buf, 42, &r), -1);     /* no trailer */
    rd_put_be(buf + RD_RESP_BODY_SIZE, 1, RD_RESP_BODY_SIZE_SIZE);
    assert_int_equal(rd_client_parse(buf, 42, &r), -1);     /* no room for one */
    rd_put_be(buf + RD_RESP_BODY_SIZE, RD_TRAILER_SIZE, RD_RESP_BODY_SIZE_SIZE);
    body[0] = body[1] = RD_TRAILER_BYTE;
    assert_int_equal(rd_client_parse(buf, 34, &r), 0);      /* trailer alone */
    assert_int_equal(r.payload_len, 0);
    /* 64 KiB + 2: too long */
    rd_put_be(buf + RD_RESP_BODY_SIZE, 0x10000 + RD_TRAILER_SIZE, RD_RESP_BODY_SIZE_SIZE);
    assert_int_equal(rd_client_parse(buf, sizeof(buf), &r), -1);
}

static rd_client_request_t client_request(uint8_t type, uint8_t command)
{
    rd_client_request_t r = {
        .raida_id = RAIDA_ID, .coin_id = COIN_ID, .command = command, .echo = 0x1234,
        .enc_type = type,
    };
    r.coin[0] = (rd_client_coin_t){ .den = DEN1, .sn = SN1 };
    r.coin[1] = (rd_client_coin_t){ .den = DEN2, .sn = SN2 };
    memcpy(r.coin[0].key, key1, 16);
    memcpy(r.coin[1].key, key2, 16);
    return r;
}

static void client_version(fixture_t *f, uint8_t type)
{
    rd_client_request_t r = client_request(type, 1);
    rd_client_ctx_t ctx;
    rd_client_response_t resp;
    uint8_t frame[128];
    size_t len = rd_client_seal(&r, frame, sizeof(frame), &ctx);
    assert_int_equal(len, rd_client_frame_size(&r));
    assert_int_equal(len, type >= 4 ? RD_MODERN_HEADER_SIZE + RD_MODERN_MIN_BODY_SIZE
                                    : RD_LEGACY_HEADER_SIZE + RD_MIN_BODY_SIZE);
    handle(f, frame, len);
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.status, 250);
    assert_true(resp.authentic);
    assert_int_equal(resp.enc_type, type);
    assert_int_equal(resp.payload_len, 8);
    assert_memory_equal(resp.payload, "20261125", 8);
    if (type >= 4) {
        assert_int_equal(resp.den, DEN1);
        assert_int_equal(resp.sn, SN1);
    } else {
        assert_int_equal(resp.echo, 0x1234);
    }
}

static void client_stats(fixture_t *f, uint8_t type)
{
    rd_client_request_t r = client_request(type, 2);
    rd_client_ctx_t ctx;
    rd_client_response_t resp;
    uint8_t frame[128];
    r.payload = admin_key;
    r.payload_len = 16;
    size_t len = rd_client_seal(&r, frame, sizeof(frame), &ctx);
    assert_true(len > 0);
    /* Encrypted, over UDP too; in clear, over TCP from loopback only. */
    if (type != 0) {
        handle(f, frame, len);
    } else {
        rd_request_t req;
        handle_tcp(f, &req, frame, len, "::1");
    }
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.status, 250);
    assert_true(resp.authentic);
    assert_true(resp.payload_len > 12);
    assert_true(rd_get_be(resp.payload + 4, 8) >= 1);
}

static void test_client_encrypted_round_trip(void **state)
{
    const uint8_t types[] = { 0, 1, 4, 5 };
    for (size_t i = 0; i < sizeof(types); i++) {
        client_version(*state, types[i]);
        client_stats(*state, types[i]);
    }
    rd_client_request_t r = client_request(2, 0);
    rd_client_ctx_t ctx;
    uint8_t frame[128];
    assert_int_equal(rd_client_frame_size(&r), 0);
    assert_int_equal(rd_client_seal(&r, frame, sizeof(frame), &ctx), 0);
    r = client_request(4, 0);
    assert_int_equal(rd_client_seal(&r, frame, RD_MODERN_HEADER_SIZE + RD_MODERN_MIN_BODY_SIZE - 1,
                                    &ctx), 0);
    assert_int_equal(rd_client_build(&r, frame, sizeof(frame), NULL), 0);   /* type 0 only */
}

/* An answer changed on the way is not authentic; type 4's is not decrypted. */
static void test_client_open_forged(void **state)
{
    fixture_t *f = *state;
    rd_client_response_t resp;
    rd_client_ctx_t ctx;
    uint8_t frame[128];
    rd_client_request_t r = client_request(4, 1);
    size_t len = rd_client_seal(&r, frame, sizeof(frame), &ctx);
    handle(f, frame, len);
    uint8_t *body = f->resp.data + RD_MODERN_HEADER_SIZE;
    body[0] ^= 1;
    uint8_t ct = body[1];
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len, &resp), 0);
    assert_false(resp.authentic);
    assert_int_equal(body[1], ct);
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len - 1, &resp), -1);
    assert_int_equal(rd_client_open(&ctx, f->resp.data, RD_MODERN_HEADER_SIZE - 1, &resp), -1);

    r = client_request(1, 1);
    memcpy(r.coin[0].key, key2, 16);                    /* wrong key: 37, no hash */
    len = rd_client_seal(&r, frame, sizeof(frame), &ctx);
    handle(f, frame, len);
    assert_int_equal(rd_client_open(&ctx, f->resp.data, f->resp.len, &resp), 0);
    assert_int_equal(resp.status, RD_STATUS_INVALID_CRC);
    assert_false(resp.authentic);
}

typedef struct server {
    int fd;
    bool udp;
    const rd_protocol_t *p;
} server_t;

static int bind_local(bool udp, char *port, size_t port_len)
{
    int fd = socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t sl = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0
        || getsockname(fd, (struct sockaddr *)&sa, &sl) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    snprintf(port, port_len, "%u", ntohs(sa.sin_port));
    return fd;
}

static size_t read_request(int fd, uint8_t *buf, size_t cap)
{
    size_t have = 0, want = RD_LEGACY_HEADER_SIZE;
    while (have < want && have < cap) {
        ssize_t n = recv(fd, buf + have, cap - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        if (have >= RD_LEGACY_HEADER_SIZE)
            want = RD_LEGACY_HEADER_SIZE + rd_get_be(buf + RD_REQ32_BODY_SIZE, RD_BODY_SIZE_SIZE);
    }
    return have;
}

static void *serve_one(void *arg)
{
    server_t *s = arg;
    uint8_t buf[2048];
    rd_response_t resp;
    rd_response_init(&resp);
    if (s->udp) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(s->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
        if (n > 0 && rd_protocol_handle_frame(s->p, &(rd_request_t){ 0 }, buf, (size_t)n, &resp))
            sendto(s->fd, resp.data, resp.len, 0, (struct sockaddr *)&from, fl);
    } else {
        int c = accept(s->fd, NULL, NULL);
        if (c >= 0) {
            size_t n = read_request(c, buf, sizeof(buf));
            if (rd_protocol_handle_frame(s->p, &(rd_request_t){ 0 }, buf, n, &resp))
                send(c, resp.data, resp.len, MSG_NOSIGNAL);
            close(c);
        }
    }
    rd_response_release(&resp);
    return NULL;
}

static void exchange_version(fixture_t *f, bool udp)
{
    char port[8];
    server_t s = { .udp = udp, .p = &f->p };
    s.fd = bind_local(udp, port, sizeof(port));
    assert_true(s.fd >= 0);
    assert_true(udp || listen(s.fd, 4) == 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, serve_one, &s), 0);

    rd_client_request_t r = { .raida_id = RAIDA_ID, .coin_id = COIN_ID, .command = 1, .echo = 77 };
    uint8_t req[64], resp[256], challenge[16];
    size_t req_len = rd_client_build(&r, req, sizeof(req), challenge);
    long n = rd_client_exchange("127.0.0.1", port, udp, req, req_len, resp, sizeof(resp), 2000);
    pthread_join(th, NULL);
    close(s.fd);

    assert_int_equal(n, 42);
    rd_client_response_t pr;
    assert_int_equal(rd_client_parse(resp, (size_t)n, &pr), 0);
    assert_int_equal(pr.status, 250);
    assert_int_equal(pr.echo, 77);
    assert_memory_equal(pr.challenge_hash, challenge, 16);
    assert_memory_equal(pr.payload, RAIDAD_BUILD_VERSION, 8);
}

static void test_client_exchange_tcp(void **state)
{
    exchange_version(*state, false);
}

static void test_client_exchange_udp(void **state)
{
    exchange_version(*state, true);
}

static void test_client_exchange_errors(void **state)
{
    (void)state;
    char port[8];
    uint8_t req[50] = { 0 }, resp[64];

    /* A UDP socket that never answers. */
    int fd = bind_local(true, port, sizeof(port));
    assert_true(fd >= 0);
    errno = 0;
    assert_int_equal(rd_client_exchange("127.0.0.1", port, true, req, sizeof(req),
                                        resp, sizeof(resp), 50), -1);
    assert_int_equal(errno, ETIMEDOUT);
    close(fd);

    /* A bound TCP port nobody listens on. */
    fd = bind_local(false, port, sizeof(port));
    assert_true(fd >= 0);
    errno = 0;
    assert_int_equal(rd_client_exchange("127.0.0.1", port, false, req, sizeof(req),
                                        resp, sizeof(resp), 500), -1);
    assert_int_equal(errno, ECONNREFUSED);
    close(fd);

    /* A silent TCP server: connected, but no answer in time. */
    fd = bind_local(false, port, sizeof(port));
    assert_true(fd >= 0);
    assert_int_equal(listen(fd, 1), 0);
    errno = 0;
    assert_int_equal(rd_client_exchange("127.0.0.1", port, false, req, sizeof(req),
                                        resp, sizeof(resp), 50), -1);
    assert_int_equal(errno, ETIMEDOUT);
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_client_build_bytes),
        T(test_client_round_trip),
        T(test_client_parse_rejects),
        T(test_client_exchange_tcp),
        T(test_client_exchange_udp),
        T(test_client_exchange_errors),
        K(test_client_encrypted_round_trip),
        K(test_client_open_forged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
