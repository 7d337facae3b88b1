#include "xgrad/io/npz.hpp"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <xtensor/xbuilder.hpp>

#include "detail/check.hpp"

namespace xgrad::io {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw IoError(fmt::format("npz: {}: {}", path, what));
}

// Fuzzing builds skip CRCs, which no random mutation could match, so that the fuzzer
// reaches the .npy parser behind them.
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
constexpr bool kCheckCrc = false;
#else
constexpr bool kCheckCrc = true;
#endif

std::size_t item_size(const std::string& dtype) {
    if (dtype == "<f4" || dtype == "<i4") return 4;
    if (dtype == "<f8" || dtype == "<i8") return 8;
    if (dtype == "|u1") return 1;
    return 0;
}

// Column-major (Fortran-order) data of `shape` rearranged into row-major order: what numpy
// writes for a transposed view, np.savez(w.T).
std::vector<unsigned char> c_order(const std::vector<unsigned char>& f, const Shape& shape, std::size_t item) {
    std::vector<unsigned char> c(f.size());
    const std::size_t rank = shape.size(), n = item ? f.size() / item : 0;
    std::vector<std::size_t> index(rank, 0), stride(rank, 1);  // column-major strides
    for (std::size_t d = 1; d < rank; ++d) stride[d] = stride[d - 1] * shape[d - 1];
    for (std::size_t i = 0; i < n; ++i) {  // i: the row-major position of `index`
        std::size_t at = 0;
        for (std::size_t d = 0; d < rank; ++d) at += index[d] * stride[d];
        std::memcpy(c.data() + i * item, f.data() + at * item, item);
        for (std::size_t d = rank; d-- > 0;) {  // the next row-major index
            if (++index[d] < shape[d]) break;
            index[d] = 0;
        }
    }
    return c;
}

// The number of elements, saturating instead of overflowing on absurd shapes.
std::size_t element_count(const Shape& shape) {
    std::size_t n = 1;
    for (auto d : shape)
        if (__builtin_mul_overflow(n, d, &n)) return SIZE_MAX;
    return n;
}

// --- little-endian byte writing and bounded reading ---

void put16(std::string& s, unsigned v) {
    s.push_back(static_cast<char>(v & 0xff));
    s.push_back(static_cast<char>((v >> 8) & 0xff));
}
void put32(std::string& s, std::uint32_t v) {
    put16(s, v & 0xffff);
    put16(s, v >> 16);
}

struct Reader {
    const std::string& data;
    const std::string& path;
    std::uint32_t u16(std::size_t at) const {
        need(at, 2);
        return static_cast<unsigned char>(data[at]) | static_cast<unsigned char>(data[at + 1]) << 8;
    }
    std::uint32_t u32(std::size_t at) const { return u16(at) | u16(at + 2) << 16; }
    void need(std::size_t at, std::size_t n) const {
        if (at > data.size() || n > data.size() - at) fail(path, "truncated (an entry points past the end of the file)");
    }
};

std::string npy_bytes(const NpyArray& a) {
    // numpy's tuple syntax: (), (5,), (3, 4)
    std::string shape = fmt::format("({}{})", fmt::join(a.shape.begin(), a.shape.end(), ", "), a.shape.size() == 1 ? "," : "");
    std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", a.dtype, shape);
    // magic (6) + version (2) + length (2) + header + '\n', padded with spaces to 64 bytes
    const std::size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
    header.append(total - 10 - header.size() - 1, ' ');
    header.push_back('\n');
    std::string out("\x93NUMPY\x01\x00", 8);
    put16(out, static_cast<unsigned>(header.size()));
    out += header;
    out.append(reinterpret_cast<const char*>(a.bytes.data()), a.bytes.size());
    return out;
}

// The value after `key` in a numpy header dict: 'descr': '<f4' -> <f4.
std::string header_field(const std::string& header, const std::string& key, const std::string& where) {
    const auto k = header.find("'" + key + "'");
    if (k == std::string::npos) fail(where, "the .npy header has no '" + key + "'");
    auto p = header.find(':', k);
    if (p == std::string::npos) fail(where, "the .npy header is malformed");
    ++p;
    while (p < header.size() && header[p] == ' ') ++p;
    if (p >= header.size()) fail(where, "the .npy header is malformed");
    if (header[p] == '\'') {
        const auto e = header.find('\'', p + 1);
        if (e == std::string::npos) fail(where, "the .npy header is malformed");
        return header.substr(p + 1, e - p - 1);
    }
    if (header[p] == '(') {
        const auto e = header.find(')', p);
        if (e == std::string::npos) fail(where, "the .npy header is malformed");
        return header.substr(p + 1, e - p - 1);
    }
    const auto e = header.find_first_of(",}", p);
    return header.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

NpyArray parse_npy(const std::string& s, const std::string& where) {
    if (s.size() < 10 || s.compare(0, 6, "\x93NUMPY") != 0) fail(where, "not an .npy array (bad magic)");
    const int major = static_cast<unsigned char>(s[6]);
    std::size_t header_len = 0, start = 0;
    if (major == 1) {
        header_len = static_cast<unsigned char>(s[8]) | static_cast<unsigned char>(s[9]) << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (s.size() < 12) fail(where, "truncated .npy header");
        header_len = 0;
        for (int i = 3; i >= 0; --i) header_len = header_len << 8 | static_cast<unsigned char>(s[8 + static_cast<std::size_t>(i)]);
        start = 12;
    } else {
        fail(where, fmt::format("unsupported .npy version {}", major));
    }
    if (header_len > s.size() - start) fail(where, "truncated .npy header");
    const std::string header = s.substr(start, header_len);
    NpyArray a;
    a.dtype = header_field(header, "descr", where);
    if (item_size(a.dtype) == 0)
        fail(where, "unsupported dtype '" + a.dtype + "' (expected <f4, <f8, <i4, <i8 or |u1)");
    const std::string order = header_field(header, "fortran_order", where);
    const bool fortran = order.find("True") != std::string::npos;
    if (!fortran && order.find("False") == std::string::npos) fail(where, "bad fortran_order in the .npy header");
    std::stringstream dims(header_field(header, "shape", where));
    std::string dim;
    while (std::getline(dims, dim, ',')) {
        const auto first = dim.find_first_not_of(' ');
        if (first == std::string::npos) continue;
        std::size_t used = 0;
        unsigned long long v = 0;
        try {
            v = std::stoull(dim.substr(first), &used);
        } catch (const std::exception&) {
            fail(where, "bad shape in the .npy header: (" + dims.str() + ")");
        }
        a.shape.push_back(static_cast<std::size_t>(v));
    }
    const std::size_t n = element_count(a.shape);
    const std::size_t body = s.size() - start - header_len;
    if (n > (std::size_t{1} << 40) || n * item_size(a.dtype) != body)
        fail(where, fmt::format("the data holds {} bytes but shape {} of {} needs {}", body, to_string(a.shape), a.dtype,
                                n * item_size(a.dtype)));
    a.bytes.assign(s.begin() + static_cast<std::ptrdiff_t>(start + header_len), s.end());
    if (fortran) a.bytes = c_order(a.bytes, a.shape, item_size(a.dtype));
    return a;
}

// Inflates a raw deflate stream that the zip directory says holds `out_size` bytes, growing the
// output as data arrives: a directory that claims gigabytes for a small stream fails once the
// stream ends, without allocating the claim up front.
std::string inflate_raw(const std::string& in, std::size_t out_size, const std::string& where) {
    std::string out;
    z_stream z{};
    if (inflateInit2(&z, -MAX_WBITS) != Z_OK) fail(where, "zlib could not start");
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    int rc = Z_OK;
    while (rc == Z_OK && out.size() < out_size) {
        const std::size_t at = out.size(), piece = std::min<std::size_t>(out_size - at, std::size_t{1} << 24);
        out.resize(at + piece);
        z.next_out = reinterpret_cast<Bytef*>(out.data() + at);
        z.avail_out = static_cast<uInt>(piece);
        rc = inflate(&z, Z_NO_FLUSH);
        out.resize(at + piece - z.avail_out);
        if (rc == Z_BUF_ERROR && z.avail_out > 0) break;  // input exhausted before the end
    }
    // The stream must end exactly at the claimed size.
    if (rc == Z_OK && out.size() == out_size) {
        unsigned char probe = 0;
        z.next_out = &probe;
        z.avail_out = 1;
        rc = inflate(&z, Z_FINISH);
        if (z.avail_out == 0) rc = Z_DATA_ERROR;  // more data than the directory says
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END || out.size() != out_size) fail(where, "corrupt deflated entry");
    return out;
}

std::string read_all(const std::string& path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (ec || !std::filesystem::exists(status))
        fail(path, "cannot open: " + (ec ? ec.message() : std::string("no such file")));
    if (!std::filesystem::is_regular_file(status)) fail(path, "not a regular file (a directory or a device)");
    std::ifstream f(path, std::ios::binary);
    if (!f) fail(path, std::string("cannot open: ") + std::strerror(errno));
    try {
        return std::string(std::istreambuf_iterator<char>(f), {});
    } catch (const std::exception& e) {
        fail(path, std::string("cannot read: ") + e.what());
    }
}

}  // namespace

NpyArray to_npy(const xt::xarray<float>& a) {
    NpyArray n{Shape(a.shape().begin(), a.shape().end()), "<f4", {}};
    const auto* p = reinterpret_cast<const unsigned char*>(a.data());
    n.bytes.assign(p, p + a.size() * sizeof(float));
    return n;
}

NpyArray to_npy(const xt::xarray<double>& a) {
    NpyArray n{Shape(a.shape().begin(), a.shape().end()), "<f8", {}};
    const auto* p = reinterpret_cast<const unsigned char*>(a.data());
    n.bytes.assign(p, p + a.size() * sizeof(double));
    return n;
}

NpyArray bytes_to_npy(const std::string& bytes) {
    return {Shape{bytes.size()}, "|u1", std::vector<unsigned char>(bytes.begin(), bytes.end())};
}

namespace {

template <class T>
xt::xarray<T> convert_npy(const NpyArray& a, const std::string& what) {
    xt::xarray<T> out = xt::empty<T>(a.shape);
    const std::size_t n = out.size();
    if (a.dtype == "<f4" && a.bytes.size() == n * 4) {
        for (std::size_t i = 0; i < n; ++i) {
            float v;
            std::memcpy(&v, a.bytes.data() + i * 4, 4);
            out.data()[i] = static_cast<T>(v);
        }
    } else if (a.dtype == "<f8" && a.bytes.size() == n * 8) {
        for (std::size_t i = 0; i < n; ++i) {
            double v;
            std::memcpy(&v, a.bytes.data() + i * 8, 8);
            out.data()[i] = static_cast<T>(v);
        }
    } else if (a.dtype == "<i4" && a.bytes.size() == n * 4) {  // numpy's default int on some platforms
        for (std::size_t i = 0; i < n; ++i) {
            std::int32_t v;
            std::memcpy(&v, a.bytes.data() + i * 4, 4);
            out.data()[i] = static_cast<T>(v);
        }
    } else if (a.dtype == "<i8" && a.bytes.size() == n * 8) {  // rounded to the nearest T beyond 2^24 / 2^53
        for (std::size_t i = 0; i < n; ++i) {
            std::int64_t v;
            std::memcpy(&v, a.bytes.data() + i * 8, 8);
            out.data()[i] = static_cast<T>(v);
        }
    } else {
        throw IoError(fmt::format("npz: {} has dtype {} and shape {}; expected floating point or integers", what,
                                  a.dtype, to_string(a.shape)));
    }
    return out;
}

}  // namespace

xt::xarray<float> npy_to_float(const NpyArray& a, const std::string& what) { return convert_npy<float>(a, what); }
xt::xarray<double> npy_to_double(const NpyArray& a, const std::string& what) { return convert_npy<double>(a, what); }

std::string npy_to_bytes(const NpyArray& a, const std::string& what) {
    if (a.dtype != "|u1") throw IoError(fmt::format("npz: {} has dtype {}; expected |u1 bytes", what, a.dtype));
    return std::string(a.bytes.begin(), a.bytes.end());
}

namespace {

// The file a save to `path` must replace: through symbolic links (a link to the real
// checkpoint keeps pointing at it), or `path` itself.
std::string save_target(const std::string& path) {
    std::filesystem::path p(path);
    std::error_code ec;
    for (int hops = 0; hops < 40 && std::filesystem::is_symlink(p, ec); ++hops) {
        const auto link = std::filesystem::read_symlink(p, ec);
        if (ec) break;
        p = link.is_absolute() ? link : p.parent_path() / link;
    }
    return p.string();
}

// Temporary files "<name>.tmp<pid>.<n>" that a killed save left beside `target`: those whose
// process no longer runs are removed. Temporaries of live processes (a save under way) stay.
void remove_stale_temporaries(const std::string& target) {
    const std::filesystem::path t(target);
    const std::filesystem::path dir = t.has_parent_path() ? t.parent_path() : std::filesystem::path(".");
    const std::string prefix = t.filename().string() + ".tmp";
    std::error_code ec;
    for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string rest = name.substr(prefix.size());
        const auto dot = rest.find('.');
        const std::string pid_text = rest.substr(0, dot);
        if (pid_text.empty() || pid_text.size() > 9 || pid_text.find_first_not_of("0123456789") != std::string::npos)
            continue;
        if (dot != std::string::npos && rest.find_first_not_of("0123456789", dot + 1) != std::string::npos) continue;
        const auto pid = static_cast<pid_t>(std::stol(pid_text));
        if (pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH) ::unlink(it->path().c_str());
    }
}

std::atomic<std::uint64_t> g_save_counter{0};

}  // namespace

void write_file_atomically(const std::string& path, const std::string& bytes) {
    const std::string target = save_target(path);
    remove_stale_temporaries(target);
    // Unique per process and per call: two threads saving to one path never share a temporary.
    const std::string tmp = fmt::format("{}.tmp{}.{}", target, ::getpid(), g_save_counter.fetch_add(1));
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) throw IoError(fmt::format("save: cannot create {}: {}", tmp, std::strerror(errno)));
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            const std::string err = std::strerror(errno);
            ::close(fd);
            ::unlink(tmp.c_str());
            throw IoError(fmt::format("save: writing {} failed: {}", tmp, err));
        }
        done += static_cast<std::size_t>(w);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        const std::string err = std::strerror(errno);
        ::unlink(tmp.c_str());
        throw IoError(fmt::format("save: flushing {} failed: {}", tmp, err));
    }
    if (std::rename(tmp.c_str(), target.c_str()) != 0) {
        const std::string err = std::strerror(errno);
        ::unlink(tmp.c_str());
        throw IoError(fmt::format("save: cannot rename {} to {}: {}", tmp, target, err));
    }
    // Make the rename itself durable.
    const auto slash = target.find_last_of('/');
    const std::string dir = slash == std::string::npos ? "." : target.substr(0, slash == 0 ? 1 : slash);
    if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
        ::fsync(dfd);
        ::close(dfd);
    }
}

void write_npz(const std::string& path, const NpzArchive& arrays) {
    // What the plain zip format (no zip64) can hold; refused here rather than written as a
    // file that cannot be read back.
    if (arrays.size() > 0xffff)
        throw IoError(fmt::format("npz: {}: {} arrays; a zip archive without zip64 holds at most 65535", path,
                                  arrays.size()));
    std::set<std::string> names;
    for (const auto& [name, array] : arrays) {
        if (name.size() + 4 > 0xffff)
            throw IoError(fmt::format("npz: {}: an array name of {} bytes; zip names are at most 65531 bytes "
                                      "before '.npy'", path, name.size()));
        if (!names.insert(name).second)
            throw IoError(fmt::format("npz: {}: two arrays named '{}'", path, name));
    }
    std::string zip, central;
    for (const auto& [name, array] : arrays) {
        if (array.bytes.size() != element_count(array.shape) * item_size(array.dtype))
            throw IoError(fmt::format("npz: {}: array '{}' has {} bytes for shape {} of {}", path, name,
                                      array.bytes.size(), to_string(array.shape), array.dtype));
        const std::string entry = name + ".npy";
        const std::string data = npy_bytes(array);
        if (zip.size() + data.size() > 0xffffffffu) throw IoError("npz: " + path + ": archives over 4 GiB are not supported");
        const auto crc = static_cast<std::uint32_t>(
            crc32(0, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size())));
        const auto offset = static_cast<std::uint32_t>(zip.size());
        const auto size = static_cast<std::uint32_t>(data.size());
        // local file header: stored (method 0), fixed 1980-01-01 timestamp for reproducible files
        put32(zip, 0x04034b50); put16(zip, 20); put16(zip, 0); put16(zip, 0); put16(zip, 0); put16(zip, 0x21);
        put32(zip, crc); put32(zip, size); put32(zip, size);
        put16(zip, static_cast<unsigned>(entry.size())); put16(zip, 0);
        zip += entry;
        zip += data;
        put32(central, 0x02014b50); put16(central, 20); put16(central, 20); put16(central, 0); put16(central, 0);
        put16(central, 0); put16(central, 0x21); put32(central, crc); put32(central, size); put32(central, size);
        put16(central, static_cast<unsigned>(entry.size())); put16(central, 0); put16(central, 0); put16(central, 0);
        put16(central, 0); put32(central, 0); put32(central, offset);
        central += entry;
    }
    const auto cd_offset = static_cast<std::uint32_t>(zip.size());
    zip += central;
    put32(zip, 0x06054b50); put16(zip, 0); put16(zip, 0);
    put16(zip, static_cast<unsigned>(arrays.size())); put16(zip, static_cast<unsigned>(arrays.size()));
    put32(zip, static_cast<std::uint32_t>(central.size())); put32(zip, cd_offset); put16(zip, 0);
    write_file_atomically(path, zip);
}

NpzArchive read_npz(const std::string& path) {
    const std::string data = read_all(path);
    const Reader r{data, path};
    if (data.size() < 22) fail(path, fmt::format("too short for a zip archive ({} bytes)", data.size()));
    // The end-of-central-directory record is in the last 22 + 65535 bytes.
    std::size_t eocd = std::string::npos;
    const std::size_t lowest = data.size() > 22 + 65535 ? data.size() - 22 - 65535 : 0;
    for (std::size_t at = data.size() - 22 + 1; at-- > lowest;)
        if (r.u32(at) == 0x06054b50) {
            eocd = at;
            break;
        }
    if (eocd == std::string::npos) fail(path, "not a zip archive (no end-of-central-directory record)");
    const std::size_t entries = r.u16(eocd + 10);
    std::size_t at = r.u32(eocd + 16);
    NpzArchive out;
    std::set<std::string> names;
    for (std::size_t e = 0; e < entries; ++e) {
        if (r.u32(at) != 0x02014b50) fail(path, "corrupt central directory");
        const unsigned method = r.u16(at + 10);
        const std::uint32_t crc = r.u32(at + 16), csize = r.u32(at + 20), usize = r.u32(at + 24);
        const std::size_t name_len = r.u16(at + 28), extra_len = r.u16(at + 30), comment_len = r.u16(at + 32);
        const std::size_t local = r.u32(at + 42);
        r.need(at + 46, name_len);
        std::string name = data.substr(at + 46, name_len);
        at += 46 + name_len + extra_len + comment_len;
        const std::string where = path + ", entry " + name;
        if (r.u32(local) != 0x04034b50) fail(where, "corrupt local header");
        // The local header must name the same entry as the directory (as Python's zipfile checks):
        // otherwise the directory's name would be given to another entry's data.
        const std::size_t local_name_len = r.u16(local + 26);
        r.need(local + 30, local_name_len);
        if (data.compare(local + 30, local_name_len, name) != 0)
            fail(where, fmt::format("the local header names '{}', the directory '{}'",
                                    data.substr(local + 30, local_name_len), name));
        if (!names.insert(name).second)
            fail(where, "the archive holds two entries of this name; refusing to choose one");
        const std::size_t body = local + 30 + local_name_len + r.u16(local + 28);
        r.need(body, csize);
        std::string payload = data.substr(body, csize);
        // deflate expands at most ~1032:1; a directory claiming more is corrupt
        if ((method == 0 && usize != csize) || (method == 8 && usize / 1032 > csize + 1024))
            fail(where, "sizes in the zip directory disagree");
        if (method == 8)
            payload = inflate_raw(payload, usize, where);
        else if (method != 0)
            fail(where, fmt::format("unsupported zip compression method {}", method));
        if (payload.size() != usize) fail(where, "sizes in the zip directory disagree");
        const auto actual = static_cast<std::uint32_t>(
            crc32(0, reinterpret_cast<const Bytef*>(payload.data()), static_cast<uInt>(payload.size())));
        if (kCheckCrc && actual != crc) fail(where, "CRC mismatch: the file is corrupt");
        if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) name.resize(name.size() - 4);
        out.emplace_back(std::move(name), parse_npy(payload, where));
    }
    return out;
}

}  // namespace xgrad::io
