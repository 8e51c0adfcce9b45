// The public API seen from C++: every header compiles, links and runs,
// the experimental one (sluice/sf.h) included.
#define SLUICE_EXPERIMENTAL_API
#include <sluice.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <vector>

int main()
{
	sluice_rate rate;
	if (sluice_rate_init(&rate, 10, 1000000000ull, 10) != SLUICE_OK)
		return 1;
	sluice_gcra cell;
	sluice_gcra_init(&cell);
	sluice_decision d;
	int admitted = 0;
	for (int i = 0; i < 20; i++)
		admitted += sluice_gcra_admit(&cell, &rate, 1000, 1, &d) ? 1 : 0;
	bool ok = admitted == 10 && !d.allowed && d.retry_after_ns == 100000000ull;

	// The window and slot cells from C++: the transparent 8-byte cells
	// embed by value, the sized ones go in a caller-sized block.
	sluice_calendar_config day;
	sluice_calendar quota;
	ok = ok && sluice_calendar_config_init(&day, 2, SLUICE_DAY_NS) == SLUICE_OK;
	sluice_calendar_init(&quota);
	ok = ok && sluice_calendar_admit(&quota, &day, 5, 2, &d) && !sluice_calendar_admit(&quota, &day, 6, 1, &d) &&
	     d.reason == SLUICE_REASON_QUOTA && d.retry_after_ns == SLUICE_DAY_NS - 6;
	sluice_slots_config slots_cfg;
	ok = ok && sluice_slots_config_init(&slots_cfg, 1, 0, 0) == SLUICE_OK;
	std::vector<unsigned char> block(sluice_slots_size(&slots_cfg) + 64);
	void *raw = block.data();
	std::size_t space = block.size();
	sluice_slots *slots = static_cast<sluice_slots *>(std::align(64, sluice_slots_size(&slots_cfg), raw, space));
	sluice_slots_init(slots, &slots_cfg);
	sluice_slot_handle handle = SLUICE_SLOT_NONE;
	ok = ok && sluice_slots_acquire(slots, &slots_cfg, 0, &d, &handle) &&
	     sluice_slots_release(slots, &slots_cfg, handle) == SLUICE_OK &&
	     sluice_slots_release(slots, &slots_cfg, handle) == SLUICE_EDOUBLE;
	// The client side from C++: a parse and a pacer.
	sluice_http_field f[1] = {{"Retry-After", 11, "2.0", 3}};
	sluice_client_limits limits;
	ok = ok && sluice_client_parse(f, 1, 0, &limits) == SLUICE_OK && limits.retry_after_ns == 2000000000ull;
	sluice_pacer_opts popts;
	sluice_pacer_opts_default(&popts);
	sluice_pacer *pacer = nullptr;
	std::uint64_t wait = 1;
	ok = ok && sluice_pacer_create(&popts, &pacer) == SLUICE_OK &&
	     sluice_pacer_acquire(pacer, "h", 1, 0, 1, &wait) == SLUICE_OK && wait == 0;
	sluice_pacer_destroy(pacer);
	std::printf("%d passed, %d failed\n", ok ? 1 : 0, ok ? 0 : 1);
	return ok ? 0 : 1;
}
