"""The bundled ICWS simulator: a real HTTP server on loopback that plays scripted chats and injects faults.

It follows the protocol reference, not the client: nothing here imports from the rest of icwschat.
"""

from .faults import Faults
from .load import LoadGenerator
from .queues import QueueId
from .scenarios import Scenario, load_scenarios
from .server import SimulatorServer
from .state import Simulator

__all__ = ["Faults", "LoadGenerator", "QueueId", "Scenario", "Simulator", "SimulatorServer", "load_scenarios"]
